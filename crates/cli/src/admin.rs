//! The admin commands: `keys`, `teams`, `users`, `spend`, `audit` and `cache purge` call the
//! admin API through the SDK's typed `AdminClient`; `audit verify` reads the database directly
//! and checks the hash chain.
//!
//! Every command prints a table, or the server's JSON with `--json`. Failures (an API error, an
//! unreachable server, a broken chain) are returned to `main`, which prints them as one line on
//! stderr and exits with status 1.

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use plexus_sdk::admin::{
    self as wire, AdminClient, AuditListQuery, CachePurgeQuery, CreateKey, CreateTeam, CreateUser,
    KeyListQuery, Limits, LimitsPatch, Nanos, PatchKey, RotateKey, SpendGroup, SpendQuery,
    TeamListQuery, UserListQuery,
};
use serde::Serialize;
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::io::Write;

const ROLES: [&str; 4] = ["admin", "team_admin", "member", "viewer"];

/// Where Plexus is and how to authenticate: the options of every command that talks to a
/// server (and only of those).
#[derive(Args, Debug, Clone)]
pub struct Conn {
    /// Plexus's server root, e.g. http://127.0.0.1:4000 (a trailing /v1 is accepted and
    /// dropped; `chat` adds it).
    #[arg(
        long,
        env = "PLEXUS_URL",
        default_value = "http://127.0.0.1:4000",
        global = true,
        help_heading = "Connection"
    )]
    pub url: String,
    /// Key sent as `Authorization: Bearer`: the master key, a virtual key or a JWT.
    #[arg(
        long,
        env = "PLEXUS_API_KEY",
        hide_env_values = true,
        global = true,
        help_heading = "Connection"
    )]
    pub api_key: Option<String>,
}

impl Conn {
    /// The server root (`--url` without a trailing `/` or `/v1`).
    pub fn root(&self) -> Result<String> {
        plexus_sdk::admin::server_root(&self.url).map_err(|e| config_error(&e))
    }

    fn client(&self) -> Result<AdminClient> {
        AdminClient::new(&self.url, self.api_key.as_deref()).map_err(|e| config_error(&e))
    }
}

fn config_error(e: &plexus_sdk::Error) -> anyhow::Error {
    match e {
        plexus_sdk::Error::Config(m) => anyhow!("{m} (set --url or PLEXUS_URL)"),
        other => anyhow!("cannot build the HTTP client: {other}"),
    }
}

/// How to print answers.
#[derive(Args, Debug, Clone, Copy)]
pub struct Output {
    /// Print the JSON answer instead of a table.
    #[arg(long, global = true, help_heading = "Output")]
    pub(crate) json: bool,
}

// ---------------------------------------------------------------------------------------------
// Command tree
// ---------------------------------------------------------------------------------------------

#[derive(Args, Debug)]
pub struct KeysCmd {
    #[command(flatten)]
    conn: Conn,
    #[command(flatten)]
    out: Output,
    #[command(subcommand)]
    cmd: KeysSub,
}

#[derive(Subcommand, Debug)]
enum KeysSub {
    /// Create a virtual key; its secret is printed once.
    Create(CreateKeyArgs),
    /// List keys (ordered by id, in pages). TEAM is the key's team, else its user's.
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
    /// Show one key (revoked ones too).
    Get {
        /// The key's id (not its secret).
        id: String,
    },
    /// Change a key's attributes (only the ones given).
    Update(UpdateKeyArgs),
    /// Revoke a key: it stops authenticating at once and stays listed as revoked.
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

/// A budget and rate limits, as options.
#[derive(Args, Debug, Clone)]
struct LimitArgs {
    /// Spending limit in US dollars.
    #[arg(long, value_parser = parse_usd)]
    max_budget_usd: Option<Nanos>,
    /// Budget window, e.g. `30d` (default: a lifetime budget).
    #[arg(long, value_parser = check_period)]
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
}

impl From<LimitArgs> for Limits {
    fn from(a: LimitArgs) -> Limits {
        Limits {
            max_budget_usd: a.max_budget_usd,
            budget_period: a.budget_period,
            rpm: a.rpm,
            tpm: a.tpm,
            tpd: a.tpd,
            max_parallel: a.max_parallel,
        }
    }
}

#[derive(Args, Debug)]
struct CreateKeyArgs {
    /// A label for the key.
    #[arg(long)]
    name: String,
    /// The team the key belongs to (its spend counts against the team's budget); default: the
    /// user's team.
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
    #[arg(long, value_parser = check_period)]
    expires_in: Option<String>,
    #[command(flatten)]
    limits: LimitArgs,
    /// A JSON object stored with the key.
    #[arg(long, value_parser = parse_json_object)]
    metadata: Option<Map<String, Value>>,
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

impl Clearable {
    /// The field's wire name.
    fn field(self) -> &'static str {
        match self {
            Clearable::Models => "models",
            Clearable::Expires => "expires_at",
            Clearable::MaxBudgetUsd => "max_budget_usd",
            Clearable::BudgetPeriod => "budget_period",
            Clearable::Rpm => "rpm",
            Clearable::Tpm => "tpm",
            Clearable::Tpd => "tpd",
            Clearable::MaxParallel => "max_parallel",
        }
    }
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
    #[command(flatten)]
    limits: LimitArgs,
    /// Replace the metadata (a JSON object).
    #[arg(long, value_parser = parse_json_object)]
    metadata: Option<Map<String, Value>>,
    /// Remove a limit or restriction; repeat for several.
    #[arg(long, value_enum, value_name = "FIELD")]
    clear: Vec<Clearable>,
}

#[derive(Args, Debug)]
pub struct TeamsCmd {
    #[command(flatten)]
    conn: Conn,
    #[command(flatten)]
    out: Output,
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
        /// The organization the team belongs to.
        #[arg(long)]
        org: Option<String>,
        #[command(flatten)]
        limits: LimitArgs,
        /// A JSON object stored with the team.
        #[arg(long, value_parser = parse_json_object)]
        metadata: Option<Map<String, Value>>,
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
    #[command(flatten)]
    out: Output,
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
        #[command(flatten)]
        limits: LimitArgs,
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

/// `plexus spend`.
#[derive(Args, Debug)]
pub struct SpendCmd {
    #[command(flatten)]
    conn: Conn,
    #[command(flatten)]
    out: Output,
    /// What to group by.
    #[arg(long, value_enum, default_value_t = GroupArg::Key)]
    group: GroupArg,
    /// Only requests since then: a duration back from now (`7d`, `12h`), a UTC date
    /// (`2025-01-31`) or Unix seconds.
    #[arg(long, value_parser = parse_since)]
    since: Option<i64>,
    /// Only this team's spend.
    #[arg(long)]
    team: Option<String>,
    /// Only this user's spend.
    #[arg(long)]
    user: Option<String>,
}

/// `--group` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum GroupArg {
    /// By virtual key.
    Key,
    /// By user.
    User,
    /// By team.
    Team,
    /// By model (as clients named it).
    Model,
    /// By day (UTC).
    Day,
}

impl From<GroupArg> for SpendGroup {
    fn from(g: GroupArg) -> SpendGroup {
        match g {
            GroupArg::Key => SpendGroup::Key,
            GroupArg::User => SpendGroup::User,
            GroupArg::Team => SpendGroup::Team,
            GroupArg::Model => SpendGroup::Model,
            GroupArg::Day => SpendGroup::Day,
        }
    }
}

#[derive(Args, Debug)]
pub struct AuditCmd {
    #[command(flatten)]
    out: Output,
    #[command(subcommand)]
    cmd: AuditSub,
}

#[derive(Subcommand, Debug)]
enum AuditSub {
    /// List audit entries (oldest first).
    List {
        #[command(flatten)]
        conn: Conn,
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
        #[command(flatten)]
        conn: Conn,
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

#[derive(Args, Debug)]
pub struct CacheCmd {
    #[command(subcommand)]
    cmd: CacheSub,
}

#[derive(Subcommand, Debug)]
enum CacheSub {
    /// Delete response-cache entries everywhere (every filter given must match; none purges
    /// everything).
    Purge {
        #[command(flatten)]
        conn: Conn,
        #[command(flatten)]
        out: Output,
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

// ---------------------------------------------------------------------------------------------
// Entry points (called from main)
// ---------------------------------------------------------------------------------------------

pub async fn keys(cmd: KeysCmd) -> Result<()> {
    let api = Api::new(&cmd.conn)?;
    run_keys(&api, cmd.out, cmd.cmd).await
}

pub async fn teams(cmd: TeamsCmd) -> Result<()> {
    let api = Api::new(&cmd.conn)?;
    run_teams(&api, cmd.out, cmd.cmd).await
}

pub async fn users(cmd: UsersCmd) -> Result<()> {
    let api = Api::new(&cmd.conn)?;
    run_users(&api, cmd.out, cmd.cmd).await
}

pub async fn spend(cmd: SpendCmd) -> Result<()> {
    let api = Api::new(&cmd.conn)?;
    let report = api
        .run(api.client.spend(&SpendQuery {
            group: Some(cmd.group.into()),
            since: cmd.since,
            team: cmd.team,
            user: cmd.user,
        }))
        .await?;
    if cmd.out.json {
        return print_json(&report);
    }
    print_out(&spend_table(&report))
}

pub async fn audit(cmd: AuditCmd) -> Result<()> {
    run_audit(cmd.out, cmd.cmd).await
}

pub async fn cache(cmd: CacheCmd) -> Result<()> {
    match cmd.cmd {
        CacheSub::Eval(args) => crate::eval::run(args).await,
        CacheSub::Purge {
            conn,
            out,
            namespace,
            model,
            tag,
            key_prefix,
        } => {
            let api = Api::new(&conn)?;
            let purged = api
                .run(api.client.purge_cache(&CachePurgeQuery {
                    namespace,
                    model,
                    tag,
                    key_prefix,
                }))
                .await?;
            if out.json {
                return print_json(&purged);
            }
            print_out(&format!("purged {} entries\n", purged.deleted))
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The client, and its errors as one line
// ---------------------------------------------------------------------------------------------

struct Api {
    client: AdminClient,
}

impl Api {
    fn new(conn: &Conn) -> Result<Api> {
        Ok(Api {
            client: conn.client()?,
        })
    }

    /// Awaits a call; its error as one line.
    async fn run<T>(
        &self,
        call: impl std::future::Future<Output = Result<T, plexus_sdk::Error>>,
    ) -> Result<T> {
        call.await.map_err(|e| describe(e, self.client.root()))
    }
}

/// An SDK error as one line: the server's message with its code, status and parameter, or
/// which server could not be reached and why.
pub fn describe(e: plexus_sdk::Error, server: &str) -> anyhow::Error {
    match e {
        plexus_sdk::Error::Api { status, body, .. } => {
            let err = body.error;
            if err.code.is_none() && err.kind == "unknown" {
                // Not the gateway's JSON error: whatever answered, in short.
                let snippet: String = err.message.trim().chars().take(200).collect();
                return if snippet.is_empty() {
                    anyhow!("HTTP {status} from {server}")
                } else {
                    anyhow!("HTTP {status} from {server}: {snippet}")
                };
            }
            let mut extra = Vec::new();
            if let Some(code) = &err.code {
                extra.push(format!("code: {code}"));
            }
            extra.push(format!("HTTP {status}"));
            if let Some(param) = &err.param {
                extra.push(format!("param: {param}"));
            }
            anyhow!("{} ({})", err.message, extra.join(", "))
        }
        plexus_sdk::Error::Http(e) => {
            let url = e.url().map_or_else(|| server.to_owned(), |u| u.to_string());
            if e.is_connect() || e.is_timeout() {
                anyhow!(
                    "cannot reach Plexus at {server} ({url}): {}",
                    root_cause(&e)
                )
            } else {
                anyhow!("request to {url} failed: {}", root_cause(&e))
            }
        }
        plexus_sdk::Error::Decode(why) => {
            anyhow!("{server} answered with something unexpected: {why}")
        }
        other => anyhow!("{other}"),
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

// ---------------------------------------------------------------------------------------------
// keys
// ---------------------------------------------------------------------------------------------

async fn run_keys(api: &Api, out: Output, cmd: KeysSub) -> Result<()> {
    let c = &api.client;
    match cmd {
        KeysSub::Create(a) => {
            let req = CreateKey {
                name: a.name,
                team: a.team,
                user: a.user,
                role: a.role,
                models: a.models,
                expires_at: None,
                expires_in: a.expires_in,
                limits: a.limits.into(),
                metadata: a.metadata,
            };
            let key = api.run(c.create_key(&req)).await?;
            // On stderr, so `--json` output stays parseable.
            if let Some(w) = &key.warning {
                eprintln!("warning: {w}");
            }
            if out.json {
                return print_json(&key);
            }
            print_secret(&format!("Created key {}", key.id), &key)
        }
        KeysSub::List {
            team,
            user,
            include_revoked,
            limit,
            cursor,
            all,
        } => {
            let mut query = KeyListQuery {
                team,
                user,
                include_revoked: include_revoked.then_some(true),
                cursor,
                limit,
            };
            let mut keys = Vec::new();
            let mut first_page = None;
            let next = loop {
                let page = api.run(c.list_keys(&query)).await?;
                keys.extend(page.data.iter().cloned());
                let next = page.next_cursor.clone();
                if first_page.is_none() {
                    first_page = Some(page);
                }
                match (&next, all) {
                    (Some(n), true) if query.cursor.as_ref() != Some(n) => {
                        query.cursor = Some(n.clone())
                    }
                    _ => break next,
                }
            };
            if out.json {
                return match (all, first_page) {
                    (false, Some(page)) => print_json(&page),
                    _ => print_json(&wire::KeyList {
                        object: "list".into(),
                        data: keys,
                        next_cursor: None,
                        has_more: false,
                        extra: Map::new(),
                    }),
                };
            }
            let teams = user_teams(api, &keys).await;
            let now = now_secs();
            let rows: Vec<Vec<String>> = keys
                .iter()
                .map(|k| {
                    vec![
                        k.id.clone(),
                        clip(&k.name, 32),
                        effective_team(k, &teams).unwrap_or_else(|| "-".into()),
                        cell(k.user.as_deref()),
                        k.role.clone(),
                        clip(&models(k), 40),
                        time_or(k.expires_at, "never"),
                        status(k, now).to_owned(),
                    ]
                })
                .collect();
            let mut text = if rows.is_empty() {
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
                text.push_str(&format!(
                    "\nmore keys: --cursor {n} for the next page, or --all\n"
                ));
            }
            print_out(&text)
        }
        KeysSub::Get { id } => {
            let key = api.run(c.get_key(&id)).await?;
            if out.json {
                return print_json(&key);
            }
            let teams = user_teams(api, std::slice::from_ref(&key)).await;
            print_out(&key_details(&key, &teams))
        }
        KeysSub::Update(a) => {
            let id = a.id.clone();
            let patch = patch_key(a, now_secs())?;
            let key = api.run(c.update_key(&id, &patch)).await?;
            if out.json {
                return print_json(&key);
            }
            let teams = user_teams(api, std::slice::from_ref(&key)).await;
            print_out(&format!(
                "Updated key {id}\n\n{}",
                key_details(&key, &teams)
            ))
        }
        KeysSub::Revoke { id } => {
            let revoked = api.run(c.revoke_key(&id)).await?;
            if out.json {
                return print_json(&revoked);
            }
            print_out(&format!(
                "Revoked key {id} (at {})\n",
                fmt_time(revoked.revoked_at, false)
            ))
        }
        KeysSub::Rotate { id, grace } => {
            let grace = grace.unwrap_or(0);
            let key = api
                .run(c.rotate_key(
                    &id,
                    &RotateKey {
                        grace_seconds: grace,
                    },
                ))
                .await?;
            if out.json {
                return print_json(&key);
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
                &format!("Rotated key {id}; the new key is {}", key.id),
                &key,
            )?;
            print_out(&format!("\n{old}"))
        }
    }
}

/// The PATCH body: given fields are set, `--clear`ed ones cleared (`null`, or `[]` for models).
fn patch_key(a: UpdateKeyArgs, now: i64) -> Result<PatchKey> {
    let mut patch = PatchKey {
        name: a.name,
        models: (!a.models.is_empty()).then_some(a.models),
        metadata: a.metadata,
        expires_at: a
            .expires_in
            .map(|secs| Some(now.saturating_add(i64::try_from(secs).unwrap_or(i64::MAX)))),
        limits: LimitsPatch::set(a.limits.into()),
    };
    for c in &a.clear {
        let field = c.field();
        let already = match c {
            Clearable::Models => patch.models.replace(Vec::new()).is_some(),
            Clearable::Expires => patch.expires_at.replace(None).is_some(),
            _ => {
                let before = patch.limits.given().contains(&field);
                patch.limits.clear(field);
                before
            }
        };
        if already {
            bail!("`{field}` is both set and cleared");
        }
    }
    if patch.given().is_empty() {
        bail!("nothing to update: give at least one attribute (see --help)");
    }
    Ok(patch)
}

/// The teams of the users of keys that have no team of their own (one request per user; a
/// user the caller may not read is left out).
async fn user_teams(api: &Api, keys: &[wire::Key]) -> HashMap<String, Option<String>> {
    let mut teams = HashMap::new();
    for k in keys {
        let Some(u) = k.user.as_ref().filter(|_| k.team.is_none()) else {
            continue;
        };
        if teams.contains_key(u) {
            continue;
        }
        let team = api.client.get_user(u).await.ok().and_then(|u| u.team);
        teams.insert(u.clone(), team);
    }
    teams
}

/// The team a key's spend counts against: its own, else its user's.
fn effective_team(k: &wire::Key, user_teams: &HashMap<String, Option<String>>) -> Option<String> {
    k.team.clone().or_else(|| {
        k.user
            .as_ref()
            .and_then(|u| user_teams.get(u).cloned().flatten())
    })
}

/// A new key's secret, shown once, and its attributes.
fn print_secret(title: &str, key: &wire::Key) -> Result<()> {
    let secret = key
        .key
        .as_deref()
        .ok_or_else(|| anyhow!("the server's answer holds no key"))?;
    print_out(&format!(
        "{title}\n\n    {secret}\n\nStore this key now; it will not be shown again.\n\n{}",
        key_details(key, &HashMap::new())
    ))
}

/// `$20 per 30d`, `$5`, or `-`.
fn budget(l: &Limits) -> String {
    match (l.max_budget_usd, &l.budget_period) {
        (None, _) => "-".to_owned(),
        (Some(b), Some(p)) => format!("${b} per {p}"),
        (Some(b), None) => format!("${b}"),
    }
}

fn key_details(k: &wire::Key, user_teams: &HashMap<String, Option<String>>) -> String {
    let team = match (&k.team, effective_team(k, user_teams)) {
        (Some(t), _) => t.clone(),
        (None, Some(t)) => format!("{t} (the user's)"),
        (None, None) => "-".to_owned(),
    };
    let mut rows = vec![
        ("ID", k.id.clone()),
        ("NAME", k.name.clone()),
        ("TEAM", team),
        ("USER", cell(k.user.as_deref())),
        ("ROLE", k.role.clone()),
        ("MODELS", models(k)),
        ("EXPIRES", time_or(k.expires_at, "never")),
        ("BUDGET", budget(&k.limits)),
    ];
    rows.extend(rate_rows(&k.limits));
    rows.push(("CREATED", fmt_time(k.created_at, false)));
    rows.push(("STATUS", status(k, now_secs()).to_owned()));
    if let Some(at) = k.revoked_at {
        rows.push(("REVOKED", fmt_time(at, false)));
    }
    if let Some(from) = &k.rotated_from {
        rows.push(("ROTATED FROM", from.clone()));
    }
    if !is_empty_json(&k.metadata) {
        rows.push(("METADATA", k.metadata.to_string()));
    }
    fields(&rows)
}

fn rate_rows(l: &Limits) -> [(&'static str, String); 4] {
    let n = |v: Option<i64>| v.map_or_else(|| "-".to_owned(), |v| v.to_string());
    [
        ("RPM", n(l.rpm)),
        ("TPM", n(l.tpm)),
        ("TPD", n(l.tpd)),
        ("MAX PARALLEL", n(l.max_parallel)),
    ]
}

fn models(k: &wire::Key) -> String {
    if k.models.is_empty() {
        "(all)".to_owned()
    } else {
        k.models.join(",")
    }
}

fn status(k: &wire::Key, now: i64) -> &'static str {
    if k.revoked || k.revoked_at.is_some() {
        "revoked"
    } else if k.expires_at.is_some_and(|at| at <= now) {
        "expired"
    } else {
        "active"
    }
}

// ---------------------------------------------------------------------------------------------
// teams and users
// ---------------------------------------------------------------------------------------------

fn budget_cells(l: &Limits) -> [String; 2] {
    [
        l.max_budget_usd
            .map_or_else(|| "-".to_owned(), |b| b.to_string()),
        cell(l.budget_period.as_deref()),
    ]
}

async fn run_teams(api: &Api, out: Output, cmd: TeamsSub) -> Result<()> {
    let c = &api.client;
    match cmd {
        TeamsSub::Create {
            id,
            name,
            org,
            limits,
            metadata,
        } => {
            let team = api
                .run(c.create_team(&CreateTeam {
                    id,
                    name,
                    org,
                    limits: limits.into(),
                    metadata,
                }))
                .await?;
            if out.json {
                return print_json(&team);
            }
            print_out(&format!(
                "Created team {}\n\n{}",
                team.id,
                team_details(&team)
            ))
        }
        TeamsSub::List => {
            let mut query = TeamListQuery::default();
            let mut teams = Vec::new();
            loop {
                let page = api.run(c.list_teams(&query)).await?;
                let last = page.data.last().map(|t| t.id.clone());
                teams.extend(page.data);
                match last {
                    Some(id) if page.has_more && query.cursor.as_ref() != Some(&id) => {
                        query.cursor = Some(id)
                    }
                    _ => break,
                }
            }
            if out.json {
                return print_json(&json!({"object": "list", "data": teams}));
            }
            let rows: Vec<Vec<String>> = teams
                .iter()
                .map(|t| {
                    let [budget, period] = budget_cells(&t.limits);
                    vec![
                        t.id.clone(),
                        clip(&t.name, 40),
                        budget,
                        period,
                        fmt_time(t.created_at, false),
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
            let team = api.run(c.get_team(&id)).await?;
            if out.json {
                return print_json(&team);
            }
            print_out(&team_details(&team))
        }
    }
}

fn team_details(t: &wire::Team) -> String {
    let [budget, period] = budget_cells(&t.limits);
    let mut rows = vec![
        ("ID", t.id.clone()),
        ("NAME", t.name.clone()),
        ("ORG", cell(t.org.as_deref())),
        ("BUDGET USD", budget),
        ("PERIOD", period),
    ];
    rows.extend(rate_rows(&t.limits));
    rows.push(("CREATED", fmt_time(t.created_at, false)));
    if !is_empty_json(&t.metadata) {
        rows.push(("METADATA", t.metadata.to_string()));
    }
    fields(&rows)
}

async fn run_users(api: &Api, out: Output, cmd: UsersSub) -> Result<()> {
    let c = &api.client;
    match cmd {
        UsersSub::Create {
            id,
            name,
            team,
            role,
            limits,
        } => {
            let user = api
                .run(c.create_user(&CreateUser {
                    id,
                    name,
                    team,
                    role,
                    limits: limits.into(),
                }))
                .await?;
            if out.json {
                return print_json(&user);
            }
            print_out(&format!(
                "Created user {}\n\n{}",
                user.id,
                user_details(&user)
            ))
        }
        UsersSub::List { team } => {
            let mut query = UserListQuery { team, cursor: None };
            let mut users = Vec::new();
            loop {
                let page = api.run(c.list_users(&query)).await?;
                let last = page.data.last().map(|u| u.id.clone());
                users.extend(page.data);
                match last {
                    Some(id) if page.has_more && query.cursor.as_ref() != Some(&id) => {
                        query.cursor = Some(id)
                    }
                    _ => break,
                }
            }
            if out.json {
                return print_json(&json!({"object": "list", "data": users}));
            }
            let rows: Vec<Vec<String>> = users
                .iter()
                .map(|u| {
                    let [budget, period] = budget_cells(&u.limits);
                    vec![
                        u.id.clone(),
                        clip(&u.name, 40),
                        cell(u.team.as_deref()),
                        u.role.clone(),
                        budget,
                        period,
                        fmt_time(u.created_at, false),
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
            let user = api.run(c.get_user(&id)).await?;
            if out.json {
                return print_json(&user);
            }
            print_out(&user_details(&user))
        }
        UsersSub::Delete { id } => {
            let deleted = api.run(c.delete_user(&id)).await?;
            if out.json {
                return print_json(&deleted);
            }
            print_out(&format!("Deleted user {id} and the user's keys\n"))
        }
    }
}

fn user_details(u: &wire::User) -> String {
    let [budget, period] = budget_cells(&u.limits);
    let mut rows = vec![
        ("ID", u.id.clone()),
        ("NAME", u.name.clone()),
        ("TEAM", cell(u.team.as_deref())),
        ("ROLE", u.role.clone()),
        ("BUDGET USD", budget),
        ("PERIOD", period),
    ];
    rows.extend(rate_rows(&u.limits));
    rows.push(("CREATED", fmt_time(u.created_at, false)));
    fields(&rows)
}

// ---------------------------------------------------------------------------------------------
// spend
// ---------------------------------------------------------------------------------------------

/// Dollars rounded to 6 decimals (half away from zero), exactly: `0.000062`, `12.500000`.
fn usd6(n: Nanos) -> String {
    let nanos = i128::from(n.0);
    let micros = (nanos + if nanos < 0 { -500 } else { 500 }) / 1000;
    let sign = if micros < 0 { "-" } else { "" };
    let abs = micros.unsigned_abs();
    format!("{sign}{}.{:06}", abs / 1_000_000, abs % 1_000_000)
}

/// A spend row's name as a cell: a day as its date, nothing as `-`.
fn spend_name(row: &wire::SpendRow) -> String {
    match &row.name {
        Some(wire::SpendName::Day(Some(secs))) => fmt_date(*secs),
        Some(name) => name
            .text()
            .filter(|t| !t.is_empty())
            .unwrap_or_else(|| "-".to_owned()),
        None => "-".to_owned(),
    }
}

fn spend_table(report: &wire::Spend) -> String {
    let group = report.group.to_uppercase();
    let headers = [
        group.as_str(),
        "REQUESTS",
        "PROMPT TOKENS",
        "COMPLETION TOKENS",
        "COST USD",
    ];
    let row = |name: String, r: &wire::SpendRow| {
        vec![
            name,
            r.requests.to_string(),
            r.prompt_tokens.to_string(),
            r.completion_tokens.to_string(),
            usd6(r.cost_usd),
        ]
    };
    if report.data.is_empty() {
        return format!("no spend (total {} USD)\n", usd6(report.total_usd));
    }
    let mut rows: Vec<Vec<String>> = report.data.iter().map(|r| row(spend_name(r), r)).collect();
    let sum = |f: fn(&wire::SpendRow) -> u64| report.data.iter().map(f).sum::<u64>().to_string();
    rows.push(vec![
        "TOTAL".to_owned(),
        sum(|r| r.requests),
        sum(|r| r.prompt_tokens),
        sum(|r| r.completion_tokens),
        usd6(report.total_usd),
    ]);
    let mut out = table_right(&headers, &rows, 1);
    if !report.cache_overhead.is_empty() {
        let rows: Vec<Vec<String>> = report
            .cache_overhead
            .iter()
            .map(|r| row(spend_name(r), r))
            .collect();
        out.push_str(
            "\nCache overhead: the gateway's own calls (semantic-cache judge, model-based \
             embeddings), by the team they served\n",
        );
        let mut headers = headers;
        headers[0] = "TEAM";
        out.push_str(&table_right(&headers, &rows, 1));
    }
    out
}

// ---------------------------------------------------------------------------------------------
// audit
// ---------------------------------------------------------------------------------------------

/// Entries per request of `audit export` and per query of `audit verify`.
const AUDIT_PAGE: u32 = 1000;

async fn run_audit(out: Output, cmd: AuditSub) -> Result<()> {
    match cmd {
        AuditSub::List {
            conn,
            actor,
            action,
            after,
            limit,
        } => {
            let api = Api::new(&conn)?;
            let list = api
                .run(api.client.audit(&AuditListQuery {
                    actor,
                    action,
                    after,
                    limit,
                }))
                .await?;
            if out.json {
                return print_json(&list);
            }
            let entries = &list.data;
            let rows: Vec<Vec<String>> = entries
                .iter()
                .map(|e| {
                    let details = if is_empty_json(&e.details) {
                        "-".to_owned()
                    } else {
                        e.details.to_string()
                    };
                    vec![
                        e.seq.to_string(),
                        fmt_time(e.ts_ms.div_euclid(1000), true),
                        e.actor.clone(),
                        e.action.clone(),
                        clip(&e.target, 40),
                        e.outcome.clone(),
                        e.source.clone(),
                        clip(&details, 60),
                    ]
                })
                .collect();
            let mut text = if rows.is_empty() {
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
                text.push_str(&format!(
                    "\nmore entries may follow: --after {}\n",
                    last.seq
                ));
            }
            print_out(&text)
        }
        AuditSub::Export {
            conn,
            after,
            actor,
            action,
        } => {
            let api = Api::new(&conn)?;
            let mut after = after;
            loop {
                let list = api
                    .run(api.client.audit(&AuditListQuery {
                        actor: actor.clone(),
                        action: action.clone(),
                        after,
                        limit: Some(AUDIT_PAGE),
                    }))
                    .await?;
                let mut lines = String::new();
                for e in &list.data {
                    lines.push_str(&serde_json::to_string(e).context("cannot print an entry")?);
                    lines.push('\n');
                }
                print_out(&lines)?;
                match list.data.last() {
                    Some(e) if list.data.len() >= AUDIT_PAGE as usize => after = Some(e.seq),
                    _ => return Ok(()),
                }
            }
        }
        AuditSub::Verify { database } => verify(&database, out.json).await,
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

/// A budget period or a lifetime, as the server takes them.
fn check_period(s: &str) -> Result<String, String> {
    let s = s.trim();
    if plexus_sdk::admin::is_period(s) {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "`{s}` is not a duration such as `30d`, `12h`, `15m` or `90s` (a whole number of ms, s, m, h or d)"
        ))
    }
}

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

fn parse_usd(s: &str) -> Result<Nanos, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(Nanos::from_usd(v)),
        _ => Err(format!(
            "`{s}` is not an amount of dollars such as `20` or `0.5`"
        )),
    }
}

/// `--since`: a duration back from now, a UTC date, or Unix seconds.
fn parse_since(s: &str) -> Result<i64, String> {
    since_at(s, now_secs())
}

fn since_at(s: &str, now: i64) -> Result<i64, String> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<i64>() {
        return Ok(secs);
    }
    if let Some(d) = plexus_core::config::parse_duration(s) {
        return Ok(now.saturating_sub(i64::try_from(d.as_secs()).unwrap_or(i64::MAX)));
    }
    let date: Vec<&str> = s.split('-').collect();
    if let [y, m, d] = date[..] {
        if let (Ok(y), Ok(m), Ok(d)) = (y.parse::<i64>(), m.parse::<i64>(), d.parse::<i64>()) {
            if (1..=12).contains(&m) && (1..=31).contains(&d) {
                return Ok(plexus_core::clock::days_from_civil(y, m, d) * 86_400);
            }
        }
    }
    Err(format!(
        "`{s}` is not a duration back from now (`7d`), a date (`2025-01-31`) or Unix seconds"
    ))
}

fn parse_json_object(s: &str) -> Result<Map<String, Value>, String> {
    match serde_json::from_str::<Value>(s) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err("must be a JSON object, e.g. '{\"owner\":\"ci\"}'".to_owned()),
        Err(e) => Err(format!("invalid JSON: {e}")),
    }
}

fn is_empty_json(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

/// An optional value as a table cell (`-` for none).
fn cell(v: Option<&str>) -> String {
    v.map_or_else(|| "-".to_owned(), str::to_owned)
}

fn time_or(secs: Option<i64>, none: &str) -> String {
    secs.map_or_else(|| none.to_owned(), |s| fmt_time(s, false))
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Unix seconds as `YYYY-MM-DD HH:MM[:SS]Z` (UTC).
pub(crate) fn fmt_time(secs: i64, with_seconds: bool) -> String {
    let rem = secs.rem_euclid(86_400);
    let (hh, mm, ss) = (rem / 3600, rem % 3600 / 60, rem % 60);
    let date = fmt_date(secs);
    if with_seconds {
        format!("{date} {hh:02}:{mm:02}:{ss:02}Z")
    } else {
        format!("{date} {hh:02}:{mm:02}Z")
    }
}

/// Unix seconds as the UTC date `YYYY-MM-DD`.
fn fmt_date(secs: i64) -> String {
    let (y, m, d) = plexus_core::clock::civil_from_days(secs.div_euclid(86_400));
    format!("{y:04}-{m:02}-{d:02}")
}

pub(crate) fn clip(s: &str, max: usize) -> String {
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
    table_right(headers, rows, usize::MAX)
}

/// Like `table`, with the columns from `first_right` on aligned to the right (numbers).
pub(crate) fn table_right(headers: &[&str], rows: &[Vec<String>], first_right: usize) -> String {
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
            let pad = w.saturating_sub(cell.chars().count());
            if i >= first_right {
                l.extend(std::iter::repeat_n(' ', pad));
                l.push_str(cell);
            } else {
                l.push_str(cell);
                if i + 1 < widths.len() {
                    l.extend(std::iter::repeat_n(' ', pad));
                }
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

pub(crate) fn print_json(v: &impl Serialize) -> Result<()> {
    let mut s = serde_json::to_string_pretty(v).context("cannot print the answer")?;
    s.push('\n');
    print_out(&s)
}

/// Writes to stdout; a closed pipe (`| head`) ends the process quietly.
pub(crate) fn print_out(s: &str) -> Result<()> {
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
        for days in [-800_000, -1, 0, 11_016, 20_000, 2_000_000] {
            let (y, m, d) = plexus_core::clock::civil_from_days(days);
            assert_eq!(plexus_core::clock::days_from_civil(y, m, d), days);
        }
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
        let t = table_right(
            &["K", "N"],
            &[vec!["a".into(), "5".into()], vec!["b".into(), "100".into()]],
            1,
        );
        assert_eq!(t, "K    N\na    5\nb  100\n");
    }

    #[test]
    fn status_follows_revocation_and_expiry() {
        let key = |revoked_at: Option<i64>, expires_at: Option<i64>| wire::Key {
            revoked: revoked_at.is_some(),
            revoked_at,
            expires_at,
            ..wire::Key::default()
        };
        assert_eq!(status(&key(Some(5), None), 10), "revoked");
        assert_eq!(status(&key(None, Some(5)), 10), "expired");
        assert_eq!(status(&key(None, Some(50)), 10), "active");
        assert_eq!(status(&wire::Key::default(), 10), "active");
    }

    fn update(clear: &[Clearable], rpm: Option<i64>) -> UpdateKeyArgs {
        UpdateKeyArgs {
            id: "k".into(),
            name: None,
            models: vec![],
            expires_in: None,
            limits: LimitArgs {
                max_budget_usd: None,
                budget_period: None,
                rpm,
                tpm: None,
                tpd: None,
                max_parallel: None,
            },
            metadata: None,
            clear: clear.to_vec(),
        }
    }

    #[test]
    fn patch_body_sets_and_clears() {
        let mut a = update(&[Clearable::Rpm, Clearable::Models], None);
        a.name = Some("n".into());
        let p = patch_key(a, 0).unwrap();
        assert_eq!(
            serde_json::to_value(&p).unwrap(),
            json!({"name": "n", "rpm": null, "models": []})
        );
        let p = patch_key(update(&[Clearable::Expires], Some(5)), 0).unwrap();
        assert_eq!(
            serde_json::to_value(&p).unwrap(),
            json!({"rpm": 5, "expires_at": null})
        );
        let mut a = update(&[], None);
        a.expires_in = Some(60);
        let p = patch_key(a, 1000).unwrap();
        assert_eq!(
            serde_json::to_value(&p).unwrap(),
            json!({"expires_at": 1060})
        );
        let mut a = update(&[Clearable::Expires], None);
        a.expires_in = Some(60);
        assert!(patch_key(a, 0).is_err(), "set and cleared");
        assert!(patch_key(update(&[Clearable::Rpm], Some(5)), 0).is_err());
        assert!(patch_key(update(&[], None), 0).is_err());
    }

    #[test]
    fn money_is_rounded_to_six_decimals_exactly() {
        assert_eq!(usd6(Nanos(62_100)), "0.000062");
        assert_eq!(usd6(Nanos(62_500)), "0.000063");
        assert_eq!(usd6(Nanos(12_500_000_000)), "12.500000");
        assert_eq!(usd6(Nanos(-1_500)), "-0.000002");
        assert_eq!(usd6(Nanos::ZERO), "0.000000");
    }

    #[test]
    fn since_takes_durations_dates_and_seconds() {
        assert_eq!(since_at("1700000000", 5), Ok(1_700_000_000));
        assert_eq!(since_at("7d", 1_000_000), Ok(1_000_000 - 7 * 86_400));
        assert_eq!(since_at("2024-12-31", 0), Ok(1_735_603_200));
        assert!(since_at("yesterday", 0).is_err());
        assert!(since_at("2024-13-01", 0).is_err());
    }

    #[test]
    fn the_spend_table_has_rounded_amounts_and_a_total() {
        let row = |model: &str, requests, nanos| wire::SpendRow {
            name: Some(wire::SpendName::Model(Some(model.into()))),
            requests,
            prompt_tokens: 10,
            completion_tokens: 5,
            cost_usd: Nanos(nanos),
            extra: Map::new(),
        };
        let report = wire::Spend {
            object: "spend".into(),
            group: "model".into(),
            total_usd: Nanos(62_100 + 1_000_000_000),
            data: vec![row("gpt", 3, 1_000_000_000), row("demo", 1, 62_100)],
            ..wire::Spend::default()
        };
        let out = spend_table(&report);
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines[0].starts_with("MODEL "), "{out}");
        assert!(
            lines[1].starts_with("gpt") && lines[1].ends_with("1.000000"),
            "{out}"
        );
        assert!(lines[2].ends_with("0.000062"), "{out}");
        assert!(lines[3].starts_with("TOTAL"), "{out}");
        assert!(lines[3].ends_with("1.000062"), "{out}");
        assert!(lines[3].contains(" 4 "), "{out}");
    }

    #[test]
    fn sqlite_paths() {
        assert_eq!(sqlite_path("sqlite://plexus.db"), Some("plexus.db"));
        assert_eq!(sqlite_path("sqlite:/tmp/a.db?mode=rwc"), Some("/tmp/a.db"));
        assert_eq!(sqlite_path("sqlite::memory:"), None);
        assert_eq!(sqlite_path("postgres://x"), None);
    }

    #[test]
    fn errors_are_one_line_with_code_status_and_param() {
        let body = plexus_sdk::ErrorResponse {
            error: plexus_sdk::ErrorObject {
                message: "team `x` not found".into(),
                kind: "invalid_request_error".into(),
                param: Some("team".into()),
                code: Some("not_found".into()),
            },
        };
        let e = describe(
            plexus_sdk::Error::Api {
                status: 404,
                body,
                request_id: None,
            },
            "http://h",
        );
        assert_eq!(
            e.to_string(),
            "team `x` not found (code: not_found, HTTP 404, param: team)"
        );
    }
}

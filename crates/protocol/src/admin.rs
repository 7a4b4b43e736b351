//! Admin API wire types (`/admin/...`): the request and response bodies of keys, teams, users,
//! organizations, spend, the audit log, provider credentials and the response cache.
//!
//! One set of types for everyone: the server builds its answers from them, the SDK's
//! `AdminClient` (and through it the CLI) reads them back, and a test checks `docs/openapi.json`
//! against them (`crates/server/tests/openapi_admin.rs`).
//!
//! - Responses keep the fields they do not know in `extra` and default the ones that are
//!   missing, so a client survives a newer or an older server.
//! - Request bodies deny unknown fields: the server answers 400 naming the field.
//! - Money is [`Nanos`]: integer nano-dollars, a decimal number of US dollars on the wire.
//! - Times are Unix seconds, except the audit log's `ts_ms`.

use crate::money::Nanos;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::fmt;

/// Unknown fields, kept verbatim.
pub type Extra = Map<String, Value>;

/// What `budget_period` and `expires_in` accept: a whole positive number of milliseconds,
/// seconds, minutes, hours or days (`30d`), up to nine digits. The spec publishes this pattern.
pub const PERIOD_PATTERN: &str = "^[1-9][0-9]{0,8}(ms|s|m|h|d)$";

/// Whether `s` is a period as [`PERIOD_PATTERN`] says.
pub fn is_period(s: &str) -> bool {
    let digits = s.len() - s.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    let (number, unit) = s.split_at(digits);
    (1..=9).contains(&number.len())
        && !number.starts_with('0')
        && ["ms", "s", "m", "h", "d"].contains(&unit)
}

// ---------------------------------------------------------------------------------------------
// Limits
// ---------------------------------------------------------------------------------------------

/// What a key, a user or a team is held to: a budget and rate limits. `None` is no limit.
///
/// Flattened into the key, team and user bodies; responses always carry the six fields (`null`
/// when unset).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Spending limit in US dollars (a negative amount is refused).
    #[serde(default, deserialize_with = "budget")]
    pub max_budget_usd: Option<Nanos>,
    /// The budget's window, e.g. `1d` or `30d`; none: a lifetime budget.
    #[serde(default)]
    pub budget_period: Option<String>,
    /// Requests per minute.
    #[serde(default, deserialize_with = "crate::whole::option")]
    pub rpm: Option<i64>,
    /// Tokens per minute.
    #[serde(default, deserialize_with = "crate::whole::option")]
    pub tpm: Option<i64>,
    /// Tokens per day.
    #[serde(default, deserialize_with = "crate::whole::option")]
    pub tpd: Option<i64>,
    /// Concurrent requests.
    #[serde(default, deserialize_with = "crate::whole::option")]
    pub max_parallel: Option<i64>,
}

impl Limits {
    /// The wire names of the fields.
    pub const FIELDS: [&'static str; 6] = [
        "max_budget_usd",
        "budget_period",
        "rpm",
        "tpm",
        "tpd",
        "max_parallel",
    ];

    /// No budget and no rate limit.
    pub fn is_empty(&self) -> bool {
        *self == Limits::default()
    }

    /// The rate limits with their wire names.
    pub fn rates(&self) -> [(&'static str, Option<i64>); 4] {
        [
            ("rpm", self.rpm),
            ("tpm", self.tpm),
            ("tpd", self.tpd),
            ("max_parallel", self.max_parallel),
        ]
    }
}

/// Changes to [`Limits`] (`PATCH`): an absent field stays, `null` clears it, a value sets it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimitsPatch {
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "double_option::serialize",
        deserialize_with = "double_budget"
    )]
    pub max_budget_usd: Option<Option<Nanos>>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "double_option"
    )]
    pub budget_period: Option<Option<String>>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "double_option::serialize",
        deserialize_with = "double_option::whole"
    )]
    pub rpm: Option<Option<i64>>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "double_option::serialize",
        deserialize_with = "double_option::whole"
    )]
    pub tpm: Option<Option<i64>>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "double_option::serialize",
        deserialize_with = "double_option::whole"
    )]
    pub tpd: Option<Option<i64>>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "double_option::serialize",
        deserialize_with = "double_option::whole"
    )]
    pub max_parallel: Option<Option<i64>>,
}

impl LimitsPatch {
    /// A patch that sets the limits `l` has and leaves the others alone.
    pub fn set(l: Limits) -> LimitsPatch {
        LimitsPatch {
            max_budget_usd: l.max_budget_usd.map(Some),
            budget_period: l.budget_period.map(Some),
            rpm: l.rpm.map(Some),
            tpm: l.tpm.map(Some),
            tpd: l.tpd.map(Some),
            max_parallel: l.max_parallel.map(Some),
        }
    }

    pub fn apply(self, to: &mut Limits) {
        fn put<T>(slot: &mut Option<T>, change: Option<Option<T>>) {
            if let Some(v) = change {
                *slot = v;
            }
        }
        put(&mut to.max_budget_usd, self.max_budget_usd);
        put(&mut to.budget_period, self.budget_period);
        put(&mut to.rpm, self.rpm);
        put(&mut to.tpm, self.tpm);
        put(&mut to.tpd, self.tpd);
        put(&mut to.max_parallel, self.max_parallel);
    }

    /// The values being set (what is cleared or left alone is `None`), to validate.
    pub fn values(&self) -> Limits {
        Limits {
            max_budget_usd: self.max_budget_usd.flatten(),
            budget_period: self.budget_period.clone().flatten(),
            rpm: self.rpm.flatten(),
            tpm: self.tpm.flatten(),
            tpd: self.tpd.flatten(),
            max_parallel: self.max_parallel.flatten(),
        }
    }

    /// The wire names of the fields given (set or cleared), in [`Limits::FIELDS`] order.
    pub fn given(&self) -> Vec<&'static str> {
        let given = [
            self.max_budget_usd.is_some(),
            self.budget_period.is_some(),
            self.rpm.is_some(),
            self.tpm.is_some(),
            self.tpd.is_some(),
            self.max_parallel.is_some(),
        ];
        Limits::FIELDS
            .iter()
            .zip(given)
            .filter(|(_, g)| *g)
            .map(|(f, _)| *f)
            .collect()
    }

    /// Clears one field by its wire name; false for a name that is not a limit.
    pub fn clear(&mut self, field: &str) -> bool {
        match field {
            "max_budget_usd" => self.max_budget_usd = Some(None),
            "budget_period" => self.budget_period = Some(None),
            "rpm" => self.rpm = Some(None),
            "tpm" => self.tpm = Some(None),
            "tpd" => self.tpd = Some(None),
            "max_parallel" => self.max_parallel = Some(None),
            _ => return false,
        }
        true
    }
}

/// `Option<Option<T>>` for `PATCH` fields: absent → `None` (leave as is), `null` →
/// `Some(None)` (clear), a value → `Some(Some(v))`. Use with
/// `#[serde(default, skip_serializing_if = "Option::is_none", with = "double_option")]`.
pub mod double_option {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<T: Serialize, S: Serializer>(
        v: &Option<Option<T>>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match v {
            Some(inner) => inner.serialize(s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Option<T>>, D::Error> {
        Option::<T>::deserialize(d).map(Some)
    }

    /// For integers: a whole float (`2.0`) is accepted, as JSON Schema's `integer` admits it.
    pub fn whole<'de, T: crate::whole::Whole, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Option<T>>, D::Error> {
        crate::whole::option(d).map(Some)
    }
}

fn whole_u64<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    crate::whole::Int::<u64>::deserialize(d).map(|crate::whole::Int(v)| v)
}

/// A budget: a non-negative number of dollars (checked before rounding to nano-dollars, so
/// `-1e-45` is refused rather than read as 0).
fn budget<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Nanos>, D::Error> {
    match Option::<f64>::deserialize(d)? {
        None => Ok(None),
        Some(usd) if usd.is_finite() && usd >= 0.0 => Ok(Some(Nanos::from_usd(usd))),
        Some(usd) => Err(serde::de::Error::invalid_value(
            serde::de::Unexpected::Float(usd),
            &"a non-negative number of dollars",
        )),
    }
}

fn double_budget<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Option<Nanos>>, D::Error> {
    budget(d).map(Some)
}

// ---------------------------------------------------------------------------------------------
// Keys
// ---------------------------------------------------------------------------------------------

/// `POST /admin/keys`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    /// A label, 1 to 256 characters.
    pub name: String,
    /// The team the key belongs to; by default the user's team, or the caller's for a
    /// non-admin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team: Option<String>,
    /// The user the key belongs to (a member's own key by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// `admin`, `team_admin`, `member` (default) or `viewer`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// Allowed model names or `*` patterns; empty: every model.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub models: Vec<String>,
    /// Unix seconds.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::whole::option"
    )]
    pub expires_at: Option<i64>,
    /// A lifetime such as `30d` (instead of `expires_at`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in: Option<String>,
    #[serde(flatten)]
    pub limits: Limits,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
}

/// `PATCH /admin/keys/{id}`: absent fields stay, `null` clears.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatchKey {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Replaces the allowed models (`[]`: every model).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub models: Option<Vec<String>>,
    /// Replaces the metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
    /// Unix seconds; `null`: never expires.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "double_option::serialize",
        deserialize_with = "double_option::whole"
    )]
    pub expires_at: Option<Option<i64>>,
    #[serde(flatten)]
    pub limits: LimitsPatch,
}

impl PatchKey {
    /// The wire names of the fields given, for the audit log.
    pub fn given(&self) -> Vec<&'static str> {
        let mut out: Vec<&'static str> = [
            ("name", self.name.is_some()),
            ("models", self.models.is_some()),
            ("metadata", self.metadata.is_some()),
            ("expires_at", self.expires_at.is_some()),
        ]
        .iter()
        .filter(|(_, g)| *g)
        .map(|(f, _)| *f)
        .collect();
        out.extend(self.limits.given());
        out
    }
}

/// `POST /admin/keys/{id}/rotate`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotateKey {
    /// How long the old key keeps working (at most 30 days; 0: revoked at once).
    #[serde(default, deserialize_with = "whole_u64")]
    pub grace_seconds: u64,
}

/// A virtual key as the API shows it (never its secret, except once in `key`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Key {
    pub id: String,
    /// `key`.
    pub object: String,
    pub name: String,
    /// The team whose budget and limits the key's requests count against.
    pub team: Option<String>,
    pub user: Option<String>,
    pub role: String,
    /// Allowed model names or `*` patterns; empty: every model.
    pub models: Vec<String>,
    pub metadata: Value,
    pub expires_at: Option<i64>,
    #[serde(flatten)]
    pub limits: Limits,
    pub created_at: i64,
    /// Revoked keys stop authenticating; they stay readable (`GET`, `include_revoked`).
    pub revoked: bool,
    pub revoked_at: Option<i64>,
    /// The key this one replaced by rotation.
    pub rotated_from: Option<String>,
    /// Only in the answers of create and rotate: the secret, shown once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Only in the answer of create, when no master key is set (what that means).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

impl Key {
    pub const OBJECT: &'static str = "key";
}

/// `GET /admin/keys`: one page, ordered by id.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct KeyList {
    /// `list`.
    pub object: String,
    pub data: Vec<Key>,
    /// Pass as `cursor` for the next page.
    pub next_cursor: Option<String>,
    pub has_more: bool,
    #[serde(flatten)]
    pub extra: Extra,
}

/// `DELETE /admin/keys/{id}`: the key is revoked (again: the first revocation time stays).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct KeyRevoked {
    pub id: String,
    /// `key`.
    pub object: String,
    pub deleted: bool,
    pub revoked: bool,
    pub revoked_at: i64,
    #[serde(flatten)]
    pub extra: Extra,
}

/// Query of `GET /admin/keys`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyListQuery {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_revoked: Option<bool>,
    /// The `next_cursor` of the previous page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
    /// Keys per page, 1 to 1000 (default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

// ---------------------------------------------------------------------------------------------
// Organizations, teams, users
// ---------------------------------------------------------------------------------------------

/// `POST /admin/orgs`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateOrg {
    /// 1 to 64 letters, digits, `-` or `_`.
    pub id: String,
    /// Display name, 1 to 256 characters (default: the id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Org {
    pub id: String,
    /// `organization`.
    pub object: String,
    pub name: String,
    pub created_at: i64,
    /// The ids of its teams (`GET /admin/orgs/{id}` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub teams: Option<Vec<String>>,
    #[serde(flatten)]
    pub extra: Extra,
}

impl Org {
    pub const OBJECT: &'static str = "organization";
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct OrgList {
    /// `list`.
    pub object: String,
    pub data: Vec<Org>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// `POST /admin/teams`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateTeam {
    /// 1 to 64 letters, digits, `-` or `_`.
    pub id: String,
    /// Display name, 1 to 256 characters (default: the id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The organization the team belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org: Option<String>,
    #[serde(flatten)]
    pub limits: Limits,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
}

/// `PATCH /admin/teams/{id}`: absent fields stay, `null` clears.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatchTeam {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(flatten)]
    pub limits: LimitsPatch,
    /// Replaces the metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
}

impl PatchTeam {
    /// The wire names of the fields given, for the audit log.
    pub fn given(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        if self.name.is_some() {
            out.push("name");
        }
        out.extend(self.limits.given());
        if self.metadata.is_some() {
            out.push("metadata");
        }
        out
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Team {
    pub id: String,
    /// `team`.
    pub object: String,
    pub name: String,
    pub org: Option<String>,
    #[serde(flatten)]
    pub limits: Limits,
    pub metadata: Value,
    pub created_at: i64,
    #[serde(flatten)]
    pub extra: Extra,
}

impl Team {
    pub const OBJECT: &'static str = "team";
}

/// `GET /admin/teams` and `GET /admin/users`: up to 1000 by id; `has_more` when the page is
/// full (ask again with `cursor` set to the last id).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TeamList {
    /// `list`.
    pub object: String,
    pub data: Vec<Team>,
    pub has_more: bool,
    #[serde(flatten)]
    pub extra: Extra,
}

/// Query of `GET /admin/teams`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TeamListQuery {
    /// List the teams whose id follows this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

/// `POST /admin/users`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    /// 1 to 64 letters, digits, `-` or `_`.
    pub id: String,
    /// Display name, 1 to 256 characters (default: the id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The user's team (a team admin's own by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team: Option<String>,
    /// `admin`, `team_admin`, `member` (default) or `viewer`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(flatten)]
    pub limits: Limits,
}

/// `PATCH /admin/users/{id}`: absent fields stay, `null` clears a limit.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatchUser {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Moves the user to another team (admins only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(flatten)]
    pub limits: LimitsPatch,
}

impl PatchUser {
    /// The wire names of the fields given, for the audit log.
    pub fn given(&self) -> Vec<&'static str> {
        let mut out: Vec<&'static str> = [
            ("name", self.name.is_some()),
            ("team", self.team.is_some()),
            ("role", self.role.is_some()),
        ]
        .iter()
        .filter(|(_, g)| *g)
        .map(|(f, _)| *f)
        .collect();
        out.extend(self.limits.given());
        out
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct User {
    pub id: String,
    /// `user`.
    pub object: String,
    pub name: String,
    pub team: Option<String>,
    pub role: String,
    #[serde(flatten)]
    pub limits: Limits,
    pub created_at: i64,
    #[serde(flatten)]
    pub extra: Extra,
}

impl User {
    pub const OBJECT: &'static str = "user";
}

/// See [`TeamList`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct UserList {
    /// `list`.
    pub object: String,
    pub data: Vec<User>,
    pub has_more: bool,
    #[serde(flatten)]
    pub extra: Extra,
}

/// Query of `GET /admin/users`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserListQuery {
    /// Only this team's users (admins; everyone else sees their own team's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team: Option<String>,
    /// List the users whose id follows this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

/// `DELETE /admin/teams/{id}` and `DELETE /admin/users/{id}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Deleted {
    pub id: String,
    /// `team` or `user`.
    pub object: String,
    pub deleted: bool,
    #[serde(flatten)]
    pub extra: Extra,
}

// ---------------------------------------------------------------------------------------------
// Spend
// ---------------------------------------------------------------------------------------------

/// What `GET /admin/spend` groups by.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SpendGroup {
    #[default]
    Key,
    User,
    Team,
    Model,
    /// Days (UTC); the row's `day` is the day's start in Unix seconds.
    Day,
}

impl SpendGroup {
    pub const ALL: [SpendGroup; 5] = [
        SpendGroup::Key,
        SpendGroup::User,
        SpendGroup::Team,
        SpendGroup::Model,
        SpendGroup::Day,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SpendGroup::Key => "key",
            SpendGroup::User => "user",
            SpendGroup::Team => "team",
            SpendGroup::Model => "model",
            SpendGroup::Day => "day",
        }
    }

    pub fn parse(s: &str) -> Option<SpendGroup> {
        SpendGroup::ALL.into_iter().find(|g| g.as_str() == s)
    }
}

impl fmt::Display for SpendGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Query of `GET /admin/spend`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpendQuery {
    /// Default `key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<SpendGroup>,
    /// Requests from this time on (Unix seconds); default: all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<i64>,
    /// Within a team.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team: Option<String>,
    /// Within a user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

/// `GET /admin/spend`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Spend {
    /// `spend`.
    pub object: String,
    /// What `data` is grouped by (`key`, `user`, `team`, `model` or `day`).
    pub group: String,
    /// The sum of `data`'s costs.
    pub total_usd: Nanos,
    pub data: Vec<SpendRow>,
    /// The gateway's own calls (the semantic cache's judge, model-based embeddings) per
    /// originating team (`team`).
    pub cache_overhead: Vec<SpendRow>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// One group of a spend report.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SpendRow {
    /// What the row is grouped by and the group's name: exactly one of `key`, `user`, `team`,
    /// `model`, `day`.
    #[serde(flatten)]
    pub name: Option<SpendName>,
    /// Client requests (a composite request once).
    pub requests: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// The cost of every call the requests made.
    pub cost_usd: Nanos,
    #[serde(flatten)]
    pub extra: Extra,
}

/// A spend row's group and name. `None` stands for the requests that had none to group by
/// (by model: the requests refused before they named one).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SpendName {
    Key(Option<String>),
    User(Option<String>),
    Team(Option<String>),
    Model(Option<String>),
    /// The day's start (UTC), Unix seconds.
    Day(Option<i64>),
}

impl SpendName {
    /// The name of a row of `group`; for `day`, the day's start in Unix seconds.
    pub fn new(group: SpendGroup, name: Option<String>) -> SpendName {
        match group {
            SpendGroup::Key => SpendName::Key(name),
            SpendGroup::User => SpendName::User(name),
            SpendGroup::Team => SpendName::Team(name),
            SpendGroup::Model => SpendName::Model(name),
            SpendGroup::Day => SpendName::Day(name.and_then(|d| d.parse().ok())),
        }
    }

    pub fn group(&self) -> SpendGroup {
        match self {
            SpendName::Key(_) => SpendGroup::Key,
            SpendName::User(_) => SpendGroup::User,
            SpendName::Team(_) => SpendGroup::Team,
            SpendName::Model(_) => SpendGroup::Model,
            SpendName::Day(_) => SpendGroup::Day,
        }
    }

    /// The name as text (a day as its Unix seconds), if there is one.
    pub fn text(&self) -> Option<String> {
        match self {
            SpendName::Key(v) | SpendName::User(v) | SpendName::Team(v) | SpendName::Model(v) => {
                v.clone()
            }
            SpendName::Day(d) => d.map(|d| d.to_string()),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Audit log
// ---------------------------------------------------------------------------------------------

/// Query of `GET /admin/audit`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditListQuery {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// Entries after this sequence number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<i64>,
    /// 1 to 10000 (default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

/// One entry of the hash-chained audit log.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AuditEntry {
    pub seq: i64,
    /// Unix milliseconds.
    pub ts_ms: i64,
    /// `master`, a key id, `jwt:<subject>`, or `anonymous`.
    pub actor: String,
    /// `key.create`, `auth.failure`, ...
    pub action: String,
    pub target: String,
    /// `ok`, `denied` or `error`.
    pub outcome: String,
    /// The client address.
    pub source: String,
    /// Action-specific details (never a secret).
    pub details: Value,
    pub prev_hash: String,
    pub hash: String,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AuditList {
    /// `list`.
    pub object: String,
    pub data: Vec<AuditEntry>,
    #[serde(flatten)]
    pub extra: Extra,
}

// ---------------------------------------------------------------------------------------------
// Request log
// ---------------------------------------------------------------------------------------------

/// `GET /admin/requests/{id}`: one request of the log, with the calls made for it. Never the
/// prompt's embedding; the bodies only when they are logged (`request_bodies`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RequestEntry {
    /// The gateway's id (`x-plexus-request-id`).
    pub request_id: String,
    /// `request`.
    pub object: String,
    /// The client's own `x-request-id`.
    pub client_request_id: Option<String>,
    /// The request this call was made for (an inner call of a composite request, or a
    /// gateway's own call such as the cache's judge); `null` on client requests.
    pub parent_request_id: Option<String>,
    /// The call's position within its parent.
    pub step: Option<u32>,
    /// The upstream's own request id, when it sent one.
    pub upstream_request_id: Option<String>,
    /// The virtual key id (`master`, `system` for the gateway's own calls, empty when auth is
    /// off).
    pub key_id: String,
    pub user: Option<String>,
    pub team: Option<String>,
    /// `chat` or `embeddings`.
    pub endpoint: String,
    /// The model name the client sent.
    pub model: String,
    pub provider: String,
    pub upstream_model: String,
    pub stream: bool,
    /// The HTTP status answered (499: the client went away).
    pub status: u16,
    /// The error code, if the request failed.
    pub error_code: Option<String>,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cached_tokens: u64,
    pub reasoning_tokens: u64,
    /// The token counts were estimated.
    pub usage_estimated: bool,
    /// What this call cost (a composite request's own row carries none: see `children`).
    pub cost_usd: Nanos,
    pub latency_ms: u64,
    /// Time to first token, for streams.
    pub ttft_ms: Option<u64>,
    /// `hit`, `semantic-hit` or `miss` when the response cache was consulted.
    pub cache: Option<String>,
    /// Unix seconds.
    pub created_at: i64,
    /// A `model: auto` request's selection decision (`served`: the configured model that
    /// served it); `null` for other requests.
    pub route: Option<Value>,
    /// The calls made for this request, in step order (their own calls are read by their id).
    pub children: Vec<RequestEntry>,
    /// Only when request bodies are logged.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_body: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_body: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

impl RequestEntry {
    pub const OBJECT: &'static str = "request";
}

// ---------------------------------------------------------------------------------------------
// Credentials
// ---------------------------------------------------------------------------------------------

/// `POST /admin/credentials`. `Debug` does not show the secret.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateCredential {
    /// A configured provider's name.
    pub provider: String,
    /// The provider's API key, 1 to 4096 printable characters.
    pub secret: String,
    /// Unix seconds.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::whole::option"
    )]
    pub expires_at: Option<i64>,
}

impl fmt::Debug for CreateCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CreateCredential")
            .field("provider", &self.provider)
            .field("secret", &"[REDACTED]")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// A stored provider credential; `secret` is masked (`sk-...abcd`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Credential {
    pub id: String,
    /// `credential`.
    pub object: String,
    pub provider: String,
    pub version: i64,
    pub secret: String,
    /// The key-encryption key that wraps it.
    pub kek_id: String,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub retired_at: Option<i64>,
    #[serde(flatten)]
    pub extra: Extra,
}

impl Credential {
    pub const OBJECT: &'static str = "credential";
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CredentialList {
    /// `list`.
    pub object: String,
    pub data: Vec<Credential>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// `DELETE /admin/credentials/{id}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CredentialRetired {
    pub id: String,
    /// `credential`.
    pub object: String,
    pub retired: bool,
    #[serde(flatten)]
    pub extra: Extra,
}

// ---------------------------------------------------------------------------------------------
// Response cache
// ---------------------------------------------------------------------------------------------

/// `GET /admin/cache`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CacheStats {
    /// `cache.stats`.
    pub object: String,
    /// Entries in this process's tier.
    pub local_entries: u64,
    pub local_bytes: u64,
    /// The semantic cache's learned thresholds; `null` without a semantic cache.
    pub semantic: Option<Value>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// Query of `DELETE /admin/cache`: every filter given must match; none purges everything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CachePurgeQuery {
    /// `team:<id>`, `key:<id>` or `global`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The model name clients sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// A tag from the requests' `metadata.cache_tags`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// The start of the entries' keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_prefix: Option<String>,
}

/// `DELETE /admin/cache`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CachePurged {
    /// `cache.purge`.
    pub object: String,
    pub deleted: u64,
    #[serde(flatten)]
    pub extra: Extra,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn limits_flatten_into_keys_with_nulls_and_exact_money() {
        let key = Key {
            id: "k1".into(),
            object: Key::OBJECT.into(),
            limits: Limits {
                max_budget_usd: Some(Nanos(62_100)),
                rpm: Some(60),
                ..Limits::default()
            },
            ..Key::default()
        };
        let v = serde_json::to_value(&key).unwrap();
        assert_eq!(v["max_budget_usd"], json!(0.0000621));
        assert_eq!(
            serde_json::to_string(&v["max_budget_usd"]).unwrap(),
            "0.0000621"
        );
        assert_eq!(v["rpm"], 60);
        assert!(v.as_object().unwrap()["tpm"].is_null(), "present, null");
        assert!(v.get("key").is_none(), "the secret only when there is one");
        let back: Key = serde_json::from_value(v).unwrap();
        assert_eq!(back, key);
    }

    #[test]
    fn responses_keep_unknown_fields_and_default_missing_ones() {
        let k: Key = serde_json::from_value(json!({"id": "k", "shiny": [1], "rpm": 5})).unwrap();
        assert_eq!(k.extra["shiny"], json!([1]));
        assert_eq!(k.limits.rpm, Some(5));
        assert!(!k.revoked);
        assert_eq!(serde_json::to_value(&k).unwrap()["shiny"], json!([1]));
    }

    #[test]
    fn requests_deny_unknown_fields_and_integer_limits_refuse_floats() {
        assert!(serde_json::from_value::<CreateKey>(json!({"name": "a", "surprise": 1})).is_err());
        assert!(serde_json::from_value::<CreateKey>(json!({"name": "a", "rpm": 1.5})).is_err());
        let whole: CreateKey =
            serde_json::from_value(json!({"name": "a", "rpm": 2.0, "expires_at": 9.0})).unwrap();
        assert_eq!((whole.limits.rpm, whole.expires_at), (Some(2), Some(9)));
        let p: PatchUser = serde_json::from_value(json!({"tpd": 3.0})).unwrap();
        assert_eq!(p.limits.tpd, Some(Some(3)));
        let k: CreateKey =
            serde_json::from_value(json!({"name": "a", "rpm": 2, "max_budget_usd": 3})).unwrap();
        assert_eq!(k.limits.rpm, Some(2));
        assert_eq!(k.limits.max_budget_usd, Some(Nanos(3_000_000_000)));
        assert!(serde_json::from_value::<CreateTeam>(json!({"id": "t", "metadata": 5})).is_err());
    }

    #[test]
    fn patches_tell_absent_from_null() {
        let p: PatchKey =
            serde_json::from_value(json!({"rpm": null, "tpd": 7, "expires_at": null})).unwrap();
        assert_eq!(p.limits.rpm, Some(None));
        assert_eq!(p.limits.tpd, Some(Some(7)));
        assert_eq!(p.limits.tpm, None);
        assert_eq!(p.expires_at, Some(None));
        assert_eq!(p.given(), ["expires_at", "rpm", "tpd"]);
        assert_eq!(
            serde_json::to_value(&p).unwrap(),
            json!({"rpm": null, "tpd": 7, "expires_at": null})
        );
        let mut l = Limits {
            rpm: Some(1),
            tpm: Some(2),
            ..Limits::default()
        };
        p.limits.apply(&mut l);
        assert_eq!((l.rpm, l.tpm, l.tpd), (None, Some(2), Some(7)));
    }

    #[test]
    fn spend_rows_are_named_by_their_group() {
        let row = SpendRow {
            name: Some(SpendName::new(SpendGroup::Day, Some("20000".into()))),
            cost_usd: Nanos(1),
            ..SpendRow::default()
        };
        let v = serde_json::to_value(&row).unwrap();
        assert_eq!(v["day"], 20000);
        assert!(v.get("key").is_none());
        assert_eq!(serde_json::from_value::<SpendRow>(v).unwrap(), row);
        let unnamed: SpendRow =
            serde_json::from_value(json!({"model": null, "requests": 2, "cost_usd": 0.5})).unwrap();
        assert_eq!(unnamed.name, Some(SpendName::Model(None)));
        assert!(unnamed.extra.is_empty(), "{:?}", unnamed.extra);
        assert_eq!(
            serde_json::to_value(&unnamed).unwrap()["model"],
            Value::Null
        );
        let newer: SpendRow =
            serde_json::from_value(json!({"planet": "mars", "requests": 1})).unwrap();
        assert_eq!((newer.name, newer.extra.len()), (None, 1));
        let q = SpendQuery {
            group: Some(SpendGroup::Model),
            ..SpendQuery::default()
        };
        assert_eq!(serde_json::to_value(&q).unwrap(), json!({"group": "model"}));
    }

    #[test]
    fn budgets_are_never_negative_and_periods_follow_the_pattern() {
        assert!(serde_json::from_value::<Limits>(json!({"max_budget_usd": -1e-45})).is_err());
        assert!(serde_json::from_value::<PatchTeam>(json!({"max_budget_usd": -2})).is_err());
        let p: PatchTeam = serde_json::from_value(json!({"max_budget_usd": null})).unwrap();
        assert_eq!(p.limits.max_budget_usd, Some(None));
        for ok in ["1d", "30d", "15m", "500ms", "999999999s", "2h"] {
            assert!(is_period(ok), "{ok}");
        }
        for bad in [
            "",
            "0d",
            "01d",
            "d",
            "30",
            "1.5d",
            " 1d",
            "1d ",
            "1w",
            "1234567890s",
            "1dd",
        ] {
            assert!(!is_period(bad), "{bad}");
        }
    }

    #[test]
    fn credentials_do_not_debug_print_their_secret() {
        let c = CreateCredential {
            provider: "openai".into(),
            secret: "sk-very-secret".into(),
            expires_at: None,
        };
        assert!(!format!("{c:?}").contains("very-secret"));
    }
}

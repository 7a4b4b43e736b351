//! The Redis backend: rate, token and concurrency limits and spend budgets shared by every
//! gateway instance that points at the same Redis.
//!
//! Same semantics as the in-process backend ([`crate::rate::LocalLimiter`], [`crate::Budgets`]):
//!
//! - Every check-and-consume is **one Lua script** run atomically by Redis (`EVALSHA`, loaded
//!   on demand). The script checks every limit of every subject first and writes only when all
//!   of them admit the request (all-or-nothing), so N instances together admit exactly what a
//!   limit allows.
//! - Requests and tokens per minute/day use GCRA with the arithmetic of [`crate::rate::gcra`].
//!   The state of a limit is its theoretical arrival time (TAT), stored as a string of
//!   nanoseconds since the Unix epoch under its own key, which expires by itself when the TAT
//!   passes (a missing key is a full allowance). Time is **the Redis server's clock**
//!   (`TIME`), never an instance's, so instances with skewed clocks agree. The script splits
//!   the TAT into seconds and nanoseconds so that the arithmetic stays exact in Lua's doubles.
//! - Concurrency (`max_parallel`) is a sorted set of leases per subject: member = lease id,
//!   score = the lease's expiry (server ms). Acquiring drops expired leases, checks the count
//!   and adds the lease; releasing removes it. The expiry (`with_lease_ttl`, 15 min by
//!   default) only matters for an instance that died holding leases.
//! - Budgets are a hash per budget and period (`spent`, `reserved`, in integer nano-dollars,
//!   changed with `HINCRBY`, exact) plus one field per reservation and a sorted set indexing
//!   the reservations by expiry, so the reservations of a crashed instance are released after the lease TTL
//!   instead of blocking the budget until the period ends. The period comes from the caller's
//!   `now_ms` (epoch-aligned, the same on every instance).
//!
//! Releases, token reconciliations and budget settlements never make a request wait: holds
//! send them to a background task owned by the limiter, which applies them (concurrently, on
//! the multiplexed connection) and retries the idempotent ones while Redis is unreachable.
//!
//! Every Redis operation is bounded by `op_timeout`. The connection is made on first use and
//! re-made after a failure; after a connection failure or timeout the limiter skips Redis for
//! [`BACKOFF`] (answering [`RedisLimitError::Unavailable`] at once) so that requests do not all
//! pay the timeout while Redis is down. What to do then (fail open or closed) is the caller's
//! choice.
//!
//! Keys (all under the prefix given to the constructor):
//! `rl:{rpm|tpm|tpd}:{scope}:{id}` (TAT), `rl:par:{scope}:{id}` (leases),
//! `budget-n:{scope}:{period_start}:{id}` (hash, nano-dollars) and
//! `budget-n-res:{scope}:{period_start}:{id}` (reservation expiries). (Before amounts were
//! nano-dollars they were micro-dollars under `budget:`; the new name keeps an instance of
//! either version from reading the other's unit: each seeds its own from the request log.) A script touches several keys, so this backend targets one Redis
//! (or a primary with replicas), not Redis Cluster.

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::Script;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::rate::{Kind, Rejection, Remaining, Snapshot, Subject};
use crate::{BudgetKey, Exceeded, Limit, Nanos};

/// How long Redis is skipped after a connection failure or a timeout.
pub const BACKOFF: Duration = Duration::from_millis(500);
/// Default lifetime of a concurrency lease or budget reservation whose holder never released
/// it (a crashed instance).
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(15 * 60);
/// How long `shutdown` waits for queued releases and settlements.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// How long the background task keeps retrying an idempotent release while Redis is away.
const RETRY_WINDOW: Duration = Duration::from_secs(60);
/// Retries kept at most (beyond this the oldest are dropped; leases then expire by TTL).
const MAX_PENDING: usize = 100_000;
/// Operations the background task runs concurrently.
const MAX_BATCH: usize = 256;
/// Budget hashes outlive their period by this (plus the lease TTL), so late settlements land.
const BUDGET_MARGIN_MS: i64 = 3_600_000;
/// Largest nano-dollar amount sent to Redis ($9M): Lua compares amounts as doubles, which
/// hold every integer up to 2^53 (about 9.007e15) exactly. A larger limit is as good as
/// unlimited for one period's spend, and a larger cost as good as infinite.
const MAX_NANOS: i64 = 9_000_000_000_000_000;
const _: () = assert!(MAX_NANOS < 1 << 53);

#[derive(Debug, Clone, thiserror::Error)]
pub enum RedisLimitError {
    #[error("redis unavailable: {0}")]
    Unavailable(String),
    #[error("invalid redis url: {0}")]
    Url(String),
}

/// A budget refusal from Redis.
#[derive(Debug, Clone, PartialEq)]
pub enum BudgetRefusal {
    /// A budget's worst case does not fit (same meaning as [`crate::Budgets::reserve`]).
    Exceeded(Exceeded),
    /// These budgets have no entry for the current period yet: the caller seeds them from its
    /// recorded spend (`budget_seed`) and retries.
    NeedsSeed(Vec<BudgetKey>),
}

// ---------------------------------------------------------------------------------------------
// Lua

/// Time helpers shared by the rate scripts. Arrival times are strings of nanoseconds since the
/// epoch; they are handled as (seconds, nanoseconds) relative to now so that every number the
/// script computes stays far below 2^53 (exact in doubles).
const LUA_PRELUDE: &str = r#"
if redis.replicate_commands then pcall(redis.replicate_commands) end
local function int(x) return string.format('%.0f', x) end
local clock = redis.call('TIME')
local now_s = tonumber(clock[1])
local now_ns = tonumber(clock[2]) * 1000
local now_ms = now_s * 1000 + math.floor(tonumber(clock[2]) / 1000)
-- Nanoseconds from now until a stored arrival time (negative when past; 0 when missing).
local function ahead(stored)
  if not stored then return 0 end
  local len = string.len(stored)
  local s, ns = 0, tonumber(stored) or 0
  if len > 9 then
    s = tonumber(string.sub(stored, 1, len - 9)) or 0
    ns = tonumber(string.sub(stored, len - 8)) or 0
  end
  return (s - now_s) * 1e9 + (ns - now_ns)
end
-- The arrival time `rel` nanoseconds from now, as stored.
local function at(rel)
  local total = now_ns + rel
  local carry = math.floor(total / 1e9)
  return string.format('%d%09d', now_s + carry, total - carry * 1e9)
end
local function increment(period, limit)
  return math.max(math.floor(period / math.max(limit, 1)), 1)
end
"#;

/// Admission. KEYS[i]: the state of check i. ARGV: lease id, lease TTL (ms), then per check
/// `type` (`g` GCRA, `p` parallel), limit, cost, period (ns).
/// Returns `{1, left_1, ahead_1, ...}` or `{0, i, wait_ns}` (`-1` never fits, `-2` parallel).
const LUA_ACQUIRE: &str = r#"
local lease = ARGV[1]
local lease_ttl = tonumber(ARGV[2])
local n = #KEYS
local state = {}
local out = {1}
for i = 1, n do
  local key = KEYS[i]
  local j = 2 + (i - 1) * 4
  local typ, limit, cost, period =
    ARGV[j + 1], tonumber(ARGV[j + 2]), tonumber(ARGV[j + 3]), tonumber(ARGV[j + 4])
  if typ == 'g' then
    if cost > limit then return {0, i, -1} end
    local r = state[key]
    if r == nil then r = math.max(ahead(redis.call('GET', key)), 0) end
    local inc = increment(period, limit)
    local new = r + cost * inc
    if new > period then return {0, i, new - period} end
    state[key] = new
    out[#out + 1] = math.min(math.floor((period - new) / inc), limit)
    out[#out + 1] = new
  else
    local c = state[key]
    if c == nil then
      redis.call('ZREMRANGEBYSCORE', key, '-inf', int(now_ms))
      c = redis.call('ZCARD', key)
    end
    if c >= limit then return {0, i, -2} end
    state[key] = c + 1
    out[#out + 1] = 0
    out[#out + 1] = 0
  end
end
local written = {}
for i = 1, n do
  local key = KEYS[i]
  if ARGV[3 + (i - 1) * 4] == 'g' then
    if not written[key] then
      written[key] = true
      local r = state[key]
      if r > 0 then redis.call('SET', key, at(r), 'PX', int(math.ceil(r / 1e6))) end
    end
  else
    redis.call('ZADD', key, int(now_ms + lease_ttl), lease .. ':' .. i)
    if redis.call('PTTL', key) < lease_ttl then redis.call('PEXPIRE', key, int(lease_ttl)) end
  end
end
return out
"#;

/// Token reconciliation. KEYS: token arrival-time keys. ARGV: signed token difference
/// (actual - reserved), then limit and period (ns) per key. Charges move the arrival time
/// forward from at least now; refunds move it back, never before now.
const LUA_ADJUST: &str = r#"
local delta = tonumber(ARGV[1])
for i = 1, #KEYS do
  local key = KEYS[i]
  local inc = increment(tonumber(ARGV[2 * i + 1]), tonumber(ARGV[2 * i]))
  local r = ahead(redis.call('GET', key))
  local new = nil
  if delta > 0 then
    new = math.max(r, 0) + math.min(delta * inc, 1e15)
  elseif r > 0 then
    new = math.max(r + delta * inc, 0)
  end
  if new ~= nil then
    if new > 0 then
      redis.call('SET', key, at(new), 'PX', int(math.ceil(new / 1e6)))
    else
      redis.call('DEL', key)
    end
  end
end
return 1
"#;

/// Drops a budget's expired reservations (those of a crashed instance).
const LUA_BUDGET_PRELUDE: &str = r#"
if redis.replicate_commands then pcall(redis.replicate_commands) end
local function int(x) return string.format('%.0f', x) end
local function release(h, field)
  local amt = redis.call('HGET', h, field)
  if not amt then return false end
  redis.call('HDEL', h, field)
  if redis.call('HINCRBY', h, 'reserved', int(-tonumber(amt))) < 0 then
    redis.call('HSET', h, 'reserved', 0)
  end
  return true
end
"#;

/// Budget reservation. KEYS: (hash, reservation index) per budget. ARGV: cost (nano-USD),
/// reservation id, reservation TTL (ms), then the limit (nano-USD) per budget.
/// Returns `{1, least}` (reserved; `least`: the smallest share any budget has left after it, in
/// millionths), `{0, i, spent, reserved}` (exceeded) or `{2, i, ...}` (needs seeding).
const LUA_RESERVE: &str = r#"
local clock = redis.call('TIME')
local now_ms = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local n = #KEYS / 2
local cost = tonumber(ARGV[1])
local id = ARGV[2]
local ttl = tonumber(ARGV[3])
local missing = {2}
for i = 1, n do
  if redis.call('EXISTS', KEYS[2 * i - 1]) == 0 then missing[#missing + 1] = i end
end
if #missing > 1 then return missing end
local added = {}
local least = 1000000
for i = 1, n do
  local h, z = KEYS[2 * i - 1], KEYS[2 * i]
  if added[h] == nil then
    added[h] = 0
    local expired = redis.call('ZRANGEBYSCORE', z, '-inf', int(now_ms), 'LIMIT', 0, 100)
    for _, rid in ipairs(expired) do
      release(h, 'r:' .. rid)
      redis.call('ZREM', z, rid)
    end
  end
  local v = redis.call('HMGET', h, 'spent', 'reserved')
  local spent = tonumber(v[1]) or 0
  local reserved = (tonumber(v[2]) or 0) + added[h]
  local limit = tonumber(ARGV[3 + i])
  if spent + reserved + cost > limit or spent >= limit then
    return {0, i, spent, reserved}
  end
  if limit > 0 then
    least = math.min(least, math.floor((limit - spent - reserved - cost) * 1000000 / limit))
  end
  added[h] = added[h] + cost
end
for i = 1, n do
  local h, z = KEYS[2 * i - 1], KEYS[2 * i]
  redis.call('HINCRBY', h, 'reserved', ARGV[1])
  redis.call('HINCRBY', h, 'r:' .. id, ARGV[1])
  redis.call('ZADD', z, int(now_ms + ttl), id)
  local left = redis.call('PTTL', h)
  if left > 0 then redis.call('PEXPIRE', z, left) end
end
return {1, least}
"#;

/// Settlement. KEYS: (hash, reservation index) per budget. ARGV: reservation id, actual cost
/// (nano-USD), `1` when this is a retry. A reservation already gone was either settled (a
/// retry after an ambiguous failure: nothing to do) or expired (first attempt: the cost is
/// still charged).
const LUA_SETTLE: &str = r#"
local id = ARGV[1]
for i = 1, #KEYS / 2 do
  local h, z = KEYS[2 * i - 1], KEYS[2 * i]
  if redis.call('EXISTS', h) == 1 then
    if release(h, 'r:' .. id) then
      redis.call('ZREM', z, id)
      redis.call('HINCRBY', h, 'spent', ARGV[2])
    elseif ARGV[3] ~= '1' then
      redis.call('HINCRBY', h, 'spent', ARGV[2])
    end
  end
end
return 1
"#;

/// Seeding, first instance wins. KEYS[1]: hash. ARGV: spent (nano-USD), TTL ms (0: none).
const LUA_SEED: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'spent', ARGV[1], 'reserved', 0)
if tonumber(ARGV[2]) > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 1
"#;

static ACQUIRE: LazyLock<Script> =
    LazyLock::new(|| Script::new(&format!("{LUA_PRELUDE}{LUA_ACQUIRE}")));
static ADJUST: LazyLock<Script> =
    LazyLock::new(|| Script::new(&format!("{LUA_PRELUDE}{LUA_ADJUST}")));
static RESERVE: LazyLock<Script> =
    LazyLock::new(|| Script::new(&format!("{LUA_BUDGET_PRELUDE}{LUA_RESERVE}")));
static SETTLE: LazyLock<Script> =
    LazyLock::new(|| Script::new(&format!("{LUA_BUDGET_PRELUDE}{LUA_SETTLE}")));
static SEED: LazyLock<Script> = LazyLock::new(|| Script::new(LUA_SEED));

// ---------------------------------------------------------------------------------------------
// Pure helpers

/// A cost as sent to Redis: negative amounts are 0, and amounts stay exact in Lua.
fn cost_arg(cost: Nanos) -> i64 {
    cost.0.clamp(0, MAX_NANOS)
}

/// A limit as sent to Redis, saturating at ±[`MAX_NANOS`] (exact in Lua).
fn limit_arg(limit: Nanos) -> i64 {
    limit.0.clamp(-MAX_NANOS, MAX_NANOS)
}

fn rate_key(prefix: &str, kind: Kind, subject: &Subject) -> String {
    format!(
        "{prefix}rl:{}:{}:{}",
        kind.slug(),
        subject.scope,
        subject.id
    )
}

fn budget_keys(prefix: &str, key: &BudgetKey, limit: &Limit, now_ms: i64) -> (String, String) {
    let start = limit.period_start(now_ms);
    (
        format!("{prefix}budget-n:{}:{start}:{}", key.scope, key.id),
        format!("{prefix}budget-n-res:{}:{start}:{}", key.scope, key.id),
    )
}

/// TTL of a budget hash seeded at `now_ms`: the rest of the period plus a margin; 0 (no
/// expiry) for a budget without a period.
fn budget_ttl_ms(limit: &Limit, now_ms: i64, lease_ttl_ms: u64) -> i64 {
    if limit.period_ms <= 0 {
        return 0;
    }
    let end = limit.period_start(now_ms).saturating_add(limit.period_ms);
    let margin = BUDGET_MARGIN_MS.saturating_add(i64::try_from(lease_ttl_ms).unwrap_or(i64::MAX));
    end.saturating_sub(now_ms).saturating_add(margin).max(1)
}

/// One limit checked by the acquire script.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Check {
    subject: usize,
    kind: Kind,
    limit: u64,
    cost: u64,
    key: String,
}

/// The checks of an admission, in the order of the local backend.
fn build_checks(prefix: &str, subjects: &[Subject], tokens: u64) -> Vec<Check> {
    let mut checks = Vec::with_capacity(subjects.len() * 2);
    for (index, subject) in subjects.iter().enumerate() {
        let q = &subject.quota;
        let limits = [
            (Kind::Requests, q.rpm, 1),
            (Kind::TokensPerMinute, q.tpm, tokens),
            (Kind::TokensPerDay, q.tpd, tokens),
            (Kind::Parallel, q.max_parallel, 1),
        ];
        for (kind, limit, cost) in limits {
            if let Some(limit) = limit {
                checks.push(Check {
                    subject: index,
                    kind,
                    limit,
                    cost,
                    key: rate_key(prefix, kind, subject),
                });
            }
        }
    }
    checks
}

fn bad_reply(what: &str, reply: &[i64]) -> RedisLimitError {
    RedisLimitError::Unavailable(format!("unexpected {what} reply {reply:?}"))
}

/// Turns the acquire script's reply into a hold or a rejection.
fn interpret_acquire(
    checks: &[Check],
    subjects: &[Subject],
    reply: &[i64],
    lease_id: &str,
    tx: &mpsc::UnboundedSender<Msg>,
    tokens: u64,
) -> Result<Result<(RemoteHold, Snapshot), Rejection>, RedisLimitError> {
    match reply.first() {
        Some(1) if reply.len() == 1 + 2 * checks.len() => {
            let mut snapshot = Snapshot::default();
            let mut hold = RemoteHold {
                tx: Some(tx.clone()),
                leases: Vec::new(),
                token_limits: Vec::new(),
                tokens,
                released: false,
            };
            for (i, c) in checks.iter().enumerate() {
                let left = u64::try_from(reply[1 + 2 * i]).unwrap_or(0);
                let ahead = u64::try_from(reply[2 + 2 * i]).unwrap_or(0);
                let r = Remaining {
                    limit: c.limit,
                    remaining: left,
                    reset: Duration::from_nanos(ahead),
                };
                match c.kind {
                    Kind::Requests => snapshot.requests = Remaining::tightest(snapshot.requests, r),
                    Kind::TokensPerMinute | Kind::TokensPerDay => {
                        snapshot.tokens = Remaining::tightest(snapshot.tokens, r);
                        hold.token_limits
                            .push((c.key.clone(), c.limit, c.kind.period_ns()));
                    }
                    Kind::Parallel => hold
                        .leases
                        .push((c.key.clone(), format!("{lease_id}:{}", i + 1))),
                }
            }
            Ok(Ok((hold, snapshot)))
        }
        Some(0) if reply.len() == 3 => {
            let check = usize::try_from(reply[1])
                .ok()
                .and_then(|i| i.checked_sub(1))
                .and_then(|i| checks.get(i))
                .ok_or_else(|| bad_reply("acquire", reply))?;
            let subject = subjects
                .get(check.subject)
                .ok_or_else(|| bad_reply("acquire", reply))?;
            let retry_after = match reply[2] {
                -1 => None,
                -2 => Some(Duration::from_secs(1)),
                wait => Some(Duration::from_nanos(u64::try_from(wait).unwrap_or(0))),
            };
            Ok(Err(Rejection {
                scope: subject.scope,
                id: subject.id.clone(),
                kind: check.kind,
                limit: check.limit,
                retry_after,
            }))
        }
        _ => Err(bad_reply("acquire", reply)),
    }
}

/// The listed budgets without repeats (a repeated key keeps its smallest limit).
fn dedup_budgets(budgets: &[(BudgetKey, Limit)]) -> Vec<(BudgetKey, Limit)> {
    let mut out: Vec<(BudgetKey, Limit)> = Vec::with_capacity(budgets.len());
    for (key, limit) in budgets {
        match out.iter_mut().find(|(k, _)| k == key) {
            Some((_, l)) if limit.max < l.max => *l = *limit,
            Some(_) => {}
            None => out.push((key.clone(), *limit)),
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Connection

enum Failure {
    /// Not sent: Redis is being skipped after a failure.
    Skipped(String),
    Redis(redis::RedisError),
}

struct ConnState {
    manager: Option<ConnectionManager>,
    down_until: Option<Instant>,
    last_error: String,
}

/// A lazily made connection with a timeout on every operation and a backoff after failures.
struct Conn {
    client: redis::Client,
    op_timeout: Duration,
    state: Mutex<ConnState>,
    connecting: tokio::sync::Mutex<()>,
}

impl Conn {
    fn lock(&self) -> MutexGuard<'_, ConnState> {
        match self.state.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// The current manager, `None` when one must be made, or the backoff refusal.
    fn current(&self) -> Result<Option<ConnectionManager>, Failure> {
        let s = self.lock();
        if let Some(until) = s.down_until {
            if Instant::now() < until {
                return Err(Failure::Skipped(format!(
                    "backing off after a failure ({})",
                    s.last_error
                )));
            }
        }
        Ok(s.manager.clone())
    }

    async fn manager(&self) -> Result<ConnectionManager, Failure> {
        if let Some(m) = self.current()? {
            return Ok(m);
        }
        let _one_at_a_time = self.connecting.lock().await;
        if let Some(m) = self.current()? {
            return Ok(m);
        }
        let config = ConnectionManagerConfig::new()
            .set_number_of_retries(0)
            .set_connection_timeout(self.op_timeout)
            .set_response_timeout(self.op_timeout);
        let m = ConnectionManager::new_with_config(self.client.clone(), config)
            .await
            .map_err(Failure::Redis)?;
        self.lock().manager = Some(m.clone());
        Ok(m)
    }

    fn failed(&self, error: &str) {
        let mut s = self.lock();
        s.manager = None;
        s.down_until = Some(Instant::now() + BACKOFF);
        s.last_error = error.to_owned();
        drop(s);
        tracing::warn!(
            error,
            backoff_ms = BACKOFF.as_millis() as u64,
            "redis limiter: redis unreachable"
        );
    }

    /// Runs one operation on the connection within `op_timeout`.
    async fn run<T, F, Fut>(&self, op: F) -> Result<T, RedisLimitError>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let work = async {
            let m = self.manager().await?;
            op(m).await.map_err(Failure::Redis)
        };
        match tokio::time::timeout(self.op_timeout, work).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(Failure::Skipped(msg))) => Err(RedisLimitError::Unavailable(msg)),
            Ok(Err(Failure::Redis(e))) => {
                let msg = e.to_string();
                let server_answered = matches!(
                    e.kind(),
                    redis::ErrorKind::ResponseError
                        | redis::ErrorKind::ExtensionError
                        | redis::ErrorKind::TypeError
                        | redis::ErrorKind::NoScriptError
                );
                if server_answered && !e.is_unrecoverable_error() {
                    tracing::warn!(error = %msg, "redis limiter: redis refused an operation");
                } else {
                    self.failed(&msg);
                }
                Err(RedisLimitError::Unavailable(msg))
            }
            Err(_) => {
                let msg = format!("no answer within {:?}", self.op_timeout);
                self.failed(&msg);
                Err(RedisLimitError::Unavailable(msg))
            }
        }
    }

    /// Applies one background operation.
    async fn apply(&self, op: &Op) -> Result<(), RedisLimitError> {
        match op {
            Op::Release { leases } => {
                let mut pipe = redis::pipe();
                pipe.atomic();
                for (key, member) in leases {
                    pipe.cmd("ZREM").arg(key).arg(member).ignore();
                }
                self.run(|mut m| async move { pipe.query_async::<()>(&mut m).await })
                    .await
            }
            Op::Tokens { keys, delta } => {
                let mut inv = ADJUST.prepare_invoke();
                inv.arg(*delta);
                for (key, limit, period) in keys {
                    inv.key(key).arg(*limit).arg(*period);
                }
                self.run(|mut m| async move { inv.invoke_async::<i64>(&mut m).await })
                    .await
                    .map(drop)
            }
            Op::Settle {
                budgets,
                id,
                actual_nanos,
                retry,
            } => {
                let mut inv = SETTLE.prepare_invoke();
                inv.arg(id).arg(*actual_nanos).arg(u8::from(*retry));
                for (h, z) in budgets {
                    inv.key(h).key(z);
                }
                self.run(|mut m| async move { inv.invoke_async::<i64>(&mut m).await })
                    .await
                    .map(drop)
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Background task

/// Work done after the response, off the request path.
#[derive(Debug)]
enum Op {
    /// Concurrency leases to remove: (sorted set, member).
    Release { leases: Vec<(String, String)> },
    /// Token reconciliation: (key, limit, period ns) and actual - reserved.
    Tokens {
        keys: Vec<(String, u64, u64)>,
        delta: i64,
    },
    /// Budget settlement: (hash, reservation index) per budget.
    Settle {
        budgets: Vec<(String, String)>,
        id: String,
        actual_nanos: i64,
        retry: bool,
    },
}

impl Op {
    /// The operation to run again after a failure, if running it twice is harmless.
    fn retry(self) -> Option<Op> {
        match self {
            Op::Release { .. } => Some(self),
            Op::Settle {
                budgets,
                id,
                actual_nanos,
                ..
            } => Some(Op::Settle {
                budgets,
                id,
                actual_nanos,
                retry: true,
            }),
            // A relative adjustment could apply twice; a lost one only costs accuracy.
            Op::Tokens { .. } => None,
        }
    }
}

#[derive(Debug)]
enum Msg {
    Op(Op),
    Shutdown,
}

async fn background(conn: Arc<Conn>, mut rx: mpsc::UnboundedReceiver<Msg>) {
    let mut pending: Vec<(Op, Instant)> = Vec::new();
    let mut draining = false;
    loop {
        let mut batch = std::mem::take(&mut pending);
        if batch.is_empty() {
            match rx.recv().await {
                Some(Msg::Op(op)) => batch.push((op, Instant::now())),
                Some(Msg::Shutdown) => {
                    draining = true;
                    rx.close();
                    continue;
                }
                None => break,
            }
        }
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(Msg::Op(op)) => batch.push((op, Instant::now())),
                Ok(Msg::Shutdown) => {
                    draining = true;
                    rx.close();
                }
                Err(_) => break,
            }
        }
        let results = futures::future::join_all(batch.iter().map(|(op, _)| conn.apply(op))).await;
        for ((op, since), result) in batch.into_iter().zip(results) {
            let Err(e) = result else { continue };
            match op.retry() {
                Some(op) if !draining && since.elapsed() < RETRY_WINDOW => {
                    pending.push((op, since));
                }
                _ => tracing::warn!(error = %e, "redis limiter: a release or settlement was lost"),
            }
        }
        if pending.len() > MAX_PENDING {
            let excess = pending.len() - MAX_PENDING;
            pending.drain(..excess);
            tracing::warn!(
                dropped = excess,
                "redis limiter: too many releases waiting for redis"
            );
        }
        if !pending.is_empty() {
            tokio::time::sleep(BACKOFF).await;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Limiter

struct Worker {
    rx: Option<mpsc::UnboundedReceiver<Msg>>,
    task: Option<JoinHandle<()>>,
}

struct Inner {
    conn: Arc<Conn>,
    prefix: String,
    lease_ttl_ms: AtomicU64,
    id_prefix: String,
    ids: AtomicU64,
    tx: mpsc::UnboundedSender<Msg>,
    started: AtomicBool,
    worker: Mutex<Worker>,
}

impl Inner {
    fn worker(&self) -> MutexGuard<'_, Worker> {
        match self.worker.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Starts the background task if a Tokio runtime is at hand and it is not running yet.
    fn ensure_worker(&self) {
        if self.started.load(Ordering::Acquire) {
            return;
        }
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let mut w = self.worker();
        if let Some(rx) = w.rx.take() {
            w.task = Some(handle.spawn(background(self.conn.clone(), rx)));
        }
        self.started.store(true, Ordering::Release);
    }

    fn next_id(&self) -> String {
        let n = self.ids.fetch_add(1, Ordering::Relaxed);
        format!("{}-{n}", self.id_prefix)
    }

    fn lease_ttl_ms(&self) -> u64 {
        self.lease_ttl_ms.load(Ordering::Relaxed)
    }
}

/// Limits and budgets shared through Redis. Cheap to clone.
#[derive(Clone)]
pub struct RedisLimiter {
    inner: Arc<Inner>,
}

impl fmt::Debug for RedisLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisLimiter")
            .field("prefix", &self.inner.prefix)
            .field("op_timeout", &self.inner.conn.op_timeout)
            .field("lease_ttl_ms", &self.inner.lease_ttl_ms())
            .finish_non_exhaustive()
    }
}

impl RedisLimiter {
    /// Parses the URL; connects on first use (never fails because Redis is down). Every key
    /// starts with `prefix` (e.g. `plexus:`); every operation is bounded by `op_timeout`.
    pub fn new(
        url: &str,
        prefix: &str,
        op_timeout: Duration,
    ) -> Result<RedisLimiter, RedisLimitError> {
        let client = redis::Client::open(url).map_err(|e| RedisLimitError::Url(e.to_string()))?;
        let (tx, rx) = mpsc::unbounded_channel();
        let limiter = RedisLimiter {
            inner: Arc::new(Inner {
                conn: Arc::new(Conn {
                    client,
                    op_timeout,
                    state: Mutex::new(ConnState {
                        manager: None,
                        down_until: None,
                        last_error: String::new(),
                    }),
                    connecting: tokio::sync::Mutex::new(()),
                }),
                prefix: prefix.to_owned(),
                lease_ttl_ms: AtomicU64::new(DEFAULT_LEASE_TTL.as_millis() as u64),
                id_prefix: uuid::Uuid::new_v4().simple().to_string(),
                ids: AtomicU64::new(0),
                tx,
                started: AtomicBool::new(false),
                worker: Mutex::new(Worker {
                    rx: Some(rx),
                    task: None,
                }),
            }),
        };
        limiter.inner.ensure_worker();
        Ok(limiter)
    }

    /// How long a concurrency lease or budget reservation outlives a holder that never
    /// released it (an instance that crashed). Default 15 minutes; it should exceed the
    /// longest request.
    pub fn with_lease_ttl(self, ttl: Duration) -> Self {
        let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        self.inner.lease_ttl_ms.store(ms, Ordering::Relaxed);
        self
    }

    /// Admits one request costing `tokens` (estimated) on every subject, or none. The outer
    /// `Err` is a Redis problem; the inner one a limit that refused.
    pub async fn acquire(
        &self,
        subjects: &[Subject],
        tokens: u64,
    ) -> Result<Result<(RemoteHold, Snapshot), Rejection>, RedisLimitError> {
        self.inner.ensure_worker();
        let checks = build_checks(&self.inner.prefix, subjects, tokens);
        if checks.is_empty() {
            return Ok(Ok((RemoteHold::empty(tokens), Snapshot::default())));
        }
        let lease_id = self.inner.next_id();
        let mut inv = ACQUIRE.prepare_invoke();
        inv.arg(&lease_id).arg(self.inner.lease_ttl_ms());
        for c in &checks {
            let typ = if c.kind == Kind::Parallel { "p" } else { "g" };
            let period = if c.kind == Kind::Parallel {
                0
            } else {
                c.kind.period_ns()
            };
            inv.key(&c.key)
                .arg(typ)
                .arg(c.limit)
                .arg(c.cost)
                .arg(period);
        }
        let reply: Vec<i64> = self
            .inner
            .conn
            .run(|mut m| async move { inv.invoke_async(&mut m).await })
            .await?;
        interpret_acquire(&checks, subjects, &reply, &lease_id, &self.inner.tx, tokens)
    }

    /// Reserves `cost` (a negative cost is 0) on every listed budget for the period
    /// containing `now_ms`, or on none.
    pub async fn budget_reserve(
        &self,
        budgets: &[(BudgetKey, Limit)],
        cost: Nanos,
        now_ms: i64,
    ) -> Result<Result<RemoteReservation, BudgetRefusal>, RedisLimitError> {
        self.inner.ensure_worker();
        let amount = Nanos(cost_arg(cost));
        let budgets = dedup_budgets(budgets);
        if budgets.is_empty() {
            return Ok(Ok(RemoteReservation {
                tx: None,
                budgets: Vec::new(),
                id: String::new(),
                amount,
                settled: false,
                remaining_share: None,
            }));
        }
        let keys: Vec<(String, String)> = budgets
            .iter()
            .map(|(k, l)| budget_keys(&self.inner.prefix, k, l, now_ms))
            .collect();
        let id = self.inner.next_id();
        let mut inv = RESERVE.prepare_invoke();
        inv.arg(amount.0).arg(&id).arg(self.inner.lease_ttl_ms());
        for ((h, z), (_, limit)) in keys.iter().zip(&budgets) {
            inv.key(h).key(z).arg(limit_arg(limit.max));
        }
        let reply: Vec<i64> = self
            .inner
            .conn
            .run(|mut m| async move { inv.invoke_async(&mut m).await })
            .await?;
        let budget = |i: i64| {
            usize::try_from(i)
                .ok()
                .and_then(|i| i.checked_sub(1))
                .and_then(|i| budgets.get(i))
                .ok_or_else(|| bad_reply("budget", &reply))
        };
        match reply.first() {
            Some(1) => Ok(Ok(RemoteReservation {
                tx: Some(self.inner.tx.clone()),
                budgets: keys,
                id,
                amount,
                settled: false,
                remaining_share: reply.get(1).map(|ppm| (*ppm as f64 / 1e6).clamp(0.0, 1.0)),
            })),
            Some(0) if reply.len() == 4 => {
                let (key, limit) = budget(reply[1])?;
                Ok(Err(BudgetRefusal::Exceeded(Exceeded {
                    key: key.clone(),
                    limit: limit.max,
                    spent: Nanos(reply[2]),
                    reserved: Nanos(reply[3]),
                    resets_at_ms: limit.period_start(now_ms).saturating_add(limit.period_ms),
                })))
            }
            Some(2) if reply.len() > 1 => {
                let mut missing = Vec::with_capacity(reply.len() - 1);
                for &i in &reply[1..] {
                    missing.push(budget(i)?.0.clone());
                }
                Ok(Err(BudgetRefusal::NeedsSeed(missing)))
            }
            _ => Err(bad_reply("budget", &reply)),
        }
    }

    /// Sets a budget's spend for the period containing `now_ms`, only if Redis has no entry
    /// for that period yet (first instance wins).
    pub async fn budget_seed(
        &self,
        key: &BudgetKey,
        limit: &Limit,
        now_ms: i64,
        recorded_spend: Nanos,
    ) -> Result<(), RedisLimitError> {
        self.inner.ensure_worker();
        let (h, _) = budget_keys(&self.inner.prefix, key, limit, now_ms);
        let mut inv = SEED.prepare_invoke();
        inv.key(h).arg(cost_arg(recorded_spend)).arg(budget_ttl_ms(
            limit,
            now_ms,
            self.inner.lease_ttl_ms(),
        ));
        self.inner
            .conn
            .run(|mut m| async move { inv.invoke_async::<i64>(&mut m).await })
            .await
            .map(drop)
    }

    /// Spent and reserved of a budget in the period containing `now_ms`; `None` when that
    /// period has no entry yet.
    pub async fn budget_usage(
        &self,
        key: &BudgetKey,
        limit: &Limit,
        now_ms: i64,
    ) -> Result<Option<(Nanos, Nanos)>, RedisLimitError> {
        self.inner.ensure_worker();
        let (h, _) = budget_keys(&self.inner.prefix, key, limit, now_ms);
        let mut cmd = redis::cmd("HMGET");
        cmd.arg(h).arg("spent").arg("reserved");
        let (spent, reserved): (Option<i64>, Option<i64>) = self
            .inner
            .conn
            .run(|mut m| async move { cmd.query_async(&mut m).await })
            .await?;
        Ok(match (spent, reserved) {
            (None, None) => None,
            (s, r) => Some((Nanos(s.unwrap_or(0)), Nanos(r.unwrap_or(0).max(0)))),
        })
    }

    /// Round trip to Redis (readiness checks).
    pub async fn ping(&self) -> Result<(), RedisLimitError> {
        self.inner.ensure_worker();
        self.inner
            .conn
            .run(|mut m| async move { redis::cmd("PING").query_async::<String>(&mut m).await })
            .await
            .map(drop)
    }

    /// Stops the background task after it has applied what is queued (at most
    /// [`SHUTDOWN_GRACE`]). Call it after in-flight requests are done: releases sent later
    /// are dropped (their leases expire by TTL).
    pub async fn shutdown(&self) {
        let task = {
            let mut w = self.inner.worker();
            w.rx = None;
            w.task.take()
        };
        let _ = self.inner.tx.send(Msg::Shutdown);
        if let Some(mut task) = task {
            if tokio::time::timeout(SHUTDOWN_GRACE, &mut task)
                .await
                .is_err()
            {
                tracing::warn!("redis limiter: shutdown gave up on queued releases");
                task.abort();
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Holds

/// What a Redis admission holds: concurrency leases and reserved tokens. Dropping it (or
/// `finish`) releases the leases in the background.
#[derive(Debug)]
pub struct RemoteHold {
    tx: Option<mpsc::UnboundedSender<Msg>>,
    leases: Vec<(String, String)>,
    token_limits: Vec<(String, u64, u64)>,
    tokens: u64,
    released: bool,
}

impl RemoteHold {
    fn empty(tokens: u64) -> RemoteHold {
        RemoteHold {
            tx: None,
            leases: Vec::new(),
            token_limits: Vec::new(),
            tokens,
            released: false,
        }
    }

    fn send(&self, op: Op) {
        if let Some(tx) = &self.tx {
            // Closed only after shutdown: the leases then expire by TTL.
            let _ = tx.send(Msg::Op(op));
        }
    }

    /// Reconciles the token reservation with the tokens the provider reported: the difference
    /// is charged (or refunded, not below now) on every token limit taken. Applied in the
    /// background.
    pub fn settle_tokens(&mut self, actual: u64) {
        if actual == self.tokens || self.token_limits.is_empty() {
            self.tokens = actual;
            return;
        }
        let delta = if actual > self.tokens {
            i64::try_from(actual - self.tokens).unwrap_or(i64::MAX)
        } else {
            i64::try_from(self.tokens - actual).map_or(i64::MIN, |d| -d)
        };
        self.tokens = actual;
        self.send(Op::Tokens {
            keys: self.token_limits.clone(),
            delta,
        });
    }

    /// Releases the concurrency leases (request and token charges stay).
    pub fn finish(mut self) {
        self.release_parallel();
    }

    fn release_parallel(&mut self) {
        if self.released {
            return;
        }
        self.released = true;
        let leases = std::mem::take(&mut self.leases);
        if !leases.is_empty() {
            self.send(Op::Release { leases });
        }
    }
}

impl Drop for RemoteHold {
    fn drop(&mut self) {
        self.release_parallel();
    }
}

/// A request's hold on its budgets in Redis. `settle` with the actual cost; dropped unsettled,
/// it releases the hold and charges nothing. Both are applied in the background.
#[derive(Debug)]
pub struct RemoteReservation {
    tx: Option<mpsc::UnboundedSender<Msg>>,
    budgets: Vec<(String, String)>,
    id: String,
    amount: Nanos,
    settled: bool,
    remaining_share: Option<f64>,
}

impl RemoteReservation {
    pub fn amount(&self) -> Nanos {
        self.amount
    }

    /// The smallest share (0..=1) any of its budgets has left after this reservation.
    pub fn remaining_share(&self) -> Option<f64> {
        self.remaining_share
    }

    pub fn settle(mut self, actual_cost: Nanos) {
        self.send(cost_arg(actual_cost));
    }

    fn send(&mut self, actual_nanos: i64) {
        if self.settled {
            return;
        }
        self.settled = true;
        if let Some(tx) = &self.tx {
            let _ = tx.send(Msg::Op(Op::Settle {
                budgets: std::mem::take(&mut self.budgets),
                id: std::mem::take(&mut self.id),
                actual_nanos,
                retry: false,
            }));
        }
    }
}

impl Drop for RemoteReservation {
    fn drop(&mut self) {
        self.send(0);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::rate::Quota;

    #[test]
    fn nano_dollars_are_exact_and_bounded() {
        let usd = Nanos::from_usd;
        assert_eq!(cost_arg(usd(0.3)), 300_000_000);
        assert_eq!(cost_arg(usd(0.1 + 0.2)), 300_000_000);
        assert_eq!(cost_arg(usd(1e-7)), 100, "a tiny cost is not rounded away");
        assert_eq!(cost_arg(usd(-1.0)), 0);
        assert_eq!(cost_arg(Nanos(i64::MAX)), MAX_NANOS);
        assert_eq!(limit_arg(usd(f64::INFINITY)), MAX_NANOS);
        assert_eq!(limit_arg(Nanos(i64::MIN)), -MAX_NANOS);
        assert_eq!(limit_arg(usd(1.0)), 1_000_000_000);
        // Three reservations of 0.3 fit in 0.9, a fourth does not (no float drift).
        assert!(3 * cost_arg(usd(0.3)) <= limit_arg(usd(0.9)));
        assert!(4 * cost_arg(usd(0.3)) > limit_arg(usd(0.9)));
    }

    #[test]
    fn keys_name_kind_subject_and_period() {
        let s = Subject::new("team", "red", Quota::default());
        assert_eq!(
            rate_key("plexus:", Kind::TokensPerDay, &s),
            "plexus:rl:tpd:team:red"
        );
        let limit = Limit {
            max: Nanos::from_usd(1.0),
            period_ms: 1000,
        };
        let key = BudgetKey {
            scope: "key",
            id: "k1".into(),
        };
        assert_eq!(
            budget_keys("p:", &key, &limit, 2500),
            (
                "p:budget-n:key:2000:k1".to_owned(),
                "p:budget-n-res:key:2000:k1".to_owned()
            )
        );
    }

    #[test]
    fn budget_ttl_covers_the_period_and_a_margin() {
        let day = Limit {
            max: Nanos::from_usd(1.0),
            period_ms: 86_400_000,
        };
        assert_eq!(
            budget_ttl_ms(&day, 86_400_000 + 400_000, 1000),
            86_400_000 - 400_000 + BUDGET_MARGIN_MS + 1000
        );
        let forever = Limit {
            max: Nanos::from_usd(1.0),
            period_ms: 0,
        };
        assert_eq!(budget_ttl_ms(&forever, 123, 1000), 0);
    }

    #[test]
    fn checks_follow_the_local_order_and_skip_unlimited() {
        let subjects = [
            Subject::new(
                "key",
                "k",
                Quota {
                    rpm: Some(10),
                    tpm: Some(1000),
                    tpd: None,
                    max_parallel: Some(2),
                },
            ),
            Subject::new("model", "m", Quota::default()),
            Subject::new(
                "team",
                "t",
                Quota {
                    tpd: Some(5),
                    ..Quota::default()
                },
            ),
        ];
        let checks = build_checks("p:", &subjects, 42);
        let got: Vec<(usize, Kind, u64, u64)> = checks
            .iter()
            .map(|c| (c.subject, c.kind, c.limit, c.cost))
            .collect();
        assert_eq!(
            got,
            vec![
                (0, Kind::Requests, 10, 1),
                (0, Kind::TokensPerMinute, 1000, 42),
                (0, Kind::Parallel, 2, 1),
                (2, Kind::TokensPerDay, 5, 42),
            ]
        );
        assert_eq!(checks[2].key, "p:rl:par:key:k");
    }

    #[test]
    fn replies_become_holds_snapshots_and_rejections() {
        let subjects = [
            Subject::new(
                "key",
                "k",
                Quota {
                    rpm: Some(10),
                    tpm: Some(1000),
                    max_parallel: Some(2),
                    ..Quota::default()
                },
            ),
            Subject::new(
                "team",
                "t",
                Quota {
                    rpm: Some(4),
                    ..Quota::default()
                },
            ),
        ];
        let checks = build_checks("p:", &subjects, 100);
        let (tx, _rx) = mpsc::unbounded_channel();
        let ok = [
            1,
            9,
            6_000_000_000,
            900,
            6_000_000_000,
            0,
            0,
            3,
            15_000_000_000,
        ];
        let (hold, snap) = interpret_acquire(&checks, &subjects, &ok, "L", &tx, 100)
            .unwrap()
            .unwrap();
        // The team (3 of 4 left) is tighter than the key (9 of 10).
        assert_eq!(
            snap.requests,
            Some(Remaining {
                limit: 4,
                remaining: 3,
                reset: Duration::from_secs(15)
            })
        );
        assert_eq!(snap.tokens.unwrap().remaining, 900);
        assert_eq!(hold.leases, vec![("p:rl:par:key:k".into(), "L:3".into())]);
        assert_eq!(hold.token_limits.len(), 1);

        let never = interpret_acquire(&checks, &subjects, &[0, 2, -1], "L", &tx, 100)
            .unwrap()
            .unwrap_err();
        assert_eq!(
            (never.kind, never.retry_after),
            (Kind::TokensPerMinute, None)
        );
        let par = interpret_acquire(&checks, &subjects, &[0, 3, -2], "L", &tx, 100)
            .unwrap()
            .unwrap_err();
        assert_eq!(par.kind, Kind::Parallel);
        assert_eq!(par.retry_after, Some(Duration::from_secs(1)));
        let team = interpret_acquire(&checks, &subjects, &[0, 4, 2_500_000_000], "L", &tx, 1)
            .unwrap()
            .unwrap_err();
        assert_eq!((team.scope, team.limit), ("team", 4));
        assert_eq!(team.retry_after, Some(Duration::from_millis(2500)));
        assert!(interpret_acquire(&checks, &subjects, &[0, 9, 1], "L", &tx, 1).is_err());
        assert!(interpret_acquire(&checks, &subjects, &[1, 2], "L", &tx, 1).is_err());
    }

    #[test]
    fn holds_send_releases_once_and_token_differences() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let mut hold = RemoteHold {
            tx: Some(tx),
            leases: vec![("z".into(), "m".into())],
            token_limits: vec![("t".into(), 1000, 60)],
            tokens: 600,
            released: false,
        };
        hold.settle_tokens(100);
        hold.settle_tokens(100);
        hold.settle_tokens(250);
        hold.finish();
        let mut got = Vec::new();
        while let Ok(Msg::Op(op)) = rx.try_recv() {
            got.push(match op {
                Op::Tokens { delta, .. } => format!("tokens {delta}"),
                Op::Release { leases } => format!("release {}", leases.len()),
                Op::Settle { .. } => "settle".into(),
            });
        }
        assert_eq!(got, ["tokens -500", "tokens 150", "release 1"]);
    }

    #[test]
    fn reservations_settle_once_and_release_on_drop() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let r = RemoteReservation {
            tx: Some(tx.clone()),
            budgets: vec![("h".into(), "z".into())],
            id: "r1".into(),
            amount: Nanos::from_usd(0.3),
            settled: false,
            remaining_share: None,
        };
        r.settle(Nanos::from_usd(0.1));
        drop(RemoteReservation {
            tx: Some(tx),
            budgets: vec![("h".into(), "z".into())],
            id: "r2".into(),
            amount: Nanos::from_usd(0.3),
            settled: false,
            remaining_share: None,
        });
        let mut got = Vec::new();
        while let Ok(Msg::Op(Op::Settle {
            id, actual_nanos, ..
        })) = rx.try_recv()
        {
            got.push((id, actual_nanos));
        }
        assert_eq!(got, [("r1".to_owned(), 100_000_000), ("r2".to_owned(), 0)]);
    }

    #[test]
    fn duplicate_budgets_keep_the_smallest_limit() {
        let k = BudgetKey {
            scope: "key",
            id: "a".into(),
        };
        let l = |usd| Limit {
            max: Nanos::from_usd(usd),
            period_ms: 10,
        };
        let d = dedup_budgets(&[
            (k.clone(), l(5.0)),
            (k.clone(), l(2.0)),
            (k.clone(), l(3.0)),
        ]);
        assert_eq!(d, vec![(k, l(2.0))]);
    }
}

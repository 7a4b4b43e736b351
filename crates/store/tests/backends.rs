//! One suite, run against both backends: SQLite in a temporary file and PostgreSQL (the local
//! server, each test in its own schema so tests run in parallel).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use plexus_core::log::RequestRecord;
use plexus_protocol::admin::{Limits, LimitsPatch};
use plexus_protocol::money::Nanos;
use plexus_store::{
    AuditEntry, AuditQuery, FeedbackRow, KeyFilter, KeyRecord, Store, StoreError, StoredResponse,
    TeamRecord, UserRecord, RUNNING,
};
use sqlx::postgres::PgConnectOptions;
use std::str::FromStr;

pub fn postgres_url() -> String {
    std::env::var("PLEXUS_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// A backend under test; dropping the PostgreSQL schema is explicit (`cleanup`).
struct Backend {
    store: Store,
    schema: Option<String>,
    _dir: Option<tempfile::TempDir>,
}

impl Backend {
    async fn sqlite() -> Backend {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        Backend {
            store: Store::connect(&url).await.unwrap(),
            schema: None,
            _dir: Some(dir),
        }
    }

    async fn postgres() -> Backend {
        let schema = format!("plexus_t_{}", uuid::Uuid::new_v4().simple());
        let admin = sqlx::PgPool::connect(&postgres_url())
            .await
            .expect("PostgreSQL must be reachable for the store tests (PLEXUS_TEST_POSTGRES_URL)");
        sqlx::query(&format!("CREATE SCHEMA {schema}"))
            .execute(&admin)
            .await
            .unwrap();
        admin.close().await;
        let options = PgConnectOptions::from_str(&postgres_url())
            .unwrap()
            .options([("search_path", schema.as_str())]);
        let store = Store::connect_postgres(options).await.unwrap();
        store.migrate().await.unwrap();
        Backend {
            store,
            schema: Some(schema),
            _dir: None,
        }
    }

    async fn cleanup(self) {
        self.store.close().await;
        if let Some(schema) = self.schema {
            let admin = sqlx::PgPool::connect(&postgres_url()).await.unwrap();
            sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
                .execute(&admin)
                .await
                .unwrap();
            admin.close().await;
        }
    }
}

macro_rules! both {
    ($name:ident, $body:path) => {
        mod $name {
            use super::*;

            #[tokio::test]
            async fn sqlite() {
                let b = Backend::sqlite().await;
                $body(&b.store).await;
                b.cleanup().await;
            }

            #[tokio::test]
            async fn postgres() {
                let b = Backend::postgres().await;
                $body(&b.store).await;
                b.cleanup().await;
            }
        }
    };
}

fn key(id: &str, team: Option<&str>, user: Option<&str>) -> KeyRecord {
    KeyRecord {
        id: id.into(),
        key_hash: format!("hash-of-{id}"),
        name: format!("key {id}"),
        team_id: team.map(str::to_owned),
        user_id: user.map(str::to_owned),
        role: "member".into(),
        models: vec!["gpt-*".into()],
        metadata: serde_json::json!({"env": "test"}),
        expires_at: Some(2_000_000_000_000),
        limits: Limits {
            max_budget_usd: Some(Nanos::from_usd(1.5)),
            budget_period: Some("30d".into()),
            rpm: Some(60),
            tpm: None,
            tpd: Some(1_000_000),
            max_parallel: Some(4),
        },
        created_at: 1,
        revoked_at: None,
        rotated_from: None,
    }
}

async fn request_log(store: &Store) {
    let rec = RequestRecord {
        ts_ms: 5,
        request_id: "req-1".into(),
        upstream_request_id: Some("up".into()),
        key_id: "k1".into(),
        endpoint: "chat",
        model: "gpt".into(),
        provider: "oai".into(),
        upstream_model: "gpt-4o".into(),
        stream: true,
        status: 499,
        prompt_tokens: 10,
        completion_tokens: 3,
        usage_estimated: true,
        cost: Nanos(200),
        latency_ms: 7,
        ttft_ms: Some(2),
        ..Default::default()
    };
    let many: Vec<RequestRecord> = (0..150)
        .map(|i| RequestRecord {
            request_id: format!("bulk-{i}"),
            ..rec.clone()
        })
        .collect();
    store.insert_requests(&[rec]).await.unwrap();
    store.insert_requests(&many).await.unwrap();
    assert_eq!(store.count_requests().await.unwrap(), 151);
    let row = store.request_by_id("req-1").await.unwrap().unwrap();
    assert_eq!(row.status, 499);
    assert!(row.stream && row.usage_estimated);
    assert_eq!(row.ttft_ms, Some(2));
    assert_eq!(row.cost, Nanos(200), "a tiny cost survives");
    assert_eq!(store.recent_requests(5).await.unwrap().len(), 5);
    store.ping().await.unwrap();
    // Retention: everything before the cut goes, the rest stays.
    store
        .insert_requests(&[RequestRecord {
            ts_ms: 1_000_000,
            request_id: "recent".into(),
            endpoint: "chat",
            ..Default::default()
        }])
        .await
        .unwrap();
    assert_eq!(store.delete_requests_before(1_000).await.unwrap(), 151);
    assert_eq!(store.count_requests().await.unwrap(), 1);
    assert!(store.request_by_id("recent").await.unwrap().is_some());
}
both!(request_log_round_trip, request_log);

async fn keys(store: &Store) {
    store
        .insert_org(&plexus_store::OrgRecord {
            id: "acme".into(),
            name: "Acme".into(),
            created_at: 1,
        })
        .await
        .unwrap();
    assert_eq!(store.list_orgs().await.unwrap().len(), 1);
    assert_eq!(store.get_org("acme").await.unwrap().unwrap().name, "Acme");
    store
        .insert_team(&TeamRecord {
            id: "t1".into(),
            name: "Team One".into(),
            org_id: Some("acme".into()),
            limits: Limits::default(),
            metadata: serde_json::json!({}),
            created_at: 1,
        })
        .await
        .unwrap();
    for i in 0..25 {
        let team = if i % 2 == 0 { Some("t1") } else { None };
        store
            .insert_key(&key(&format!("k{i:02}"), team, None))
            .await
            .unwrap();
    }
    assert!(matches!(
        store.insert_key(&key("k00", None, None)).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(
        store
            .get_team("t1")
            .await
            .unwrap()
            .unwrap()
            .org_id
            .as_deref(),
        Some("acme")
    );
    let got = store.get_key("k03").await.unwrap().unwrap();
    assert_eq!(got, key("k03", None, None));
    assert!(store.get_key("nope").await.unwrap().is_none());

    // Keyset pagination visits every key exactly once.
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let (page, next) = store
            .list_keys(&KeyFilter {
                after: after.clone(),
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap();
        seen.extend(page.into_iter().map(|k| k.id));
        match next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    assert_eq!(seen.len(), 25);
    assert!(seen.windows(2).all(|w| w[0] < w[1]));

    let (team_keys, _) = store
        .list_keys(&KeyFilter {
            team_id: Some("t1".into()),
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(team_keys.len(), 13);

    let mut k = store.get_key("k01").await.unwrap().unwrap();
    k.revoked_at = Some(99);
    k.models = vec![];
    store.update_key(&k).await.unwrap();
    let (active, _) = store
        .list_keys(&KeyFilter {
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(active.len(), 24, "revoked keys are hidden by default");
    assert_eq!(
        store.get_key("k01").await.unwrap().unwrap().revoked_at,
        Some(99)
    );
    assert_eq!(store.count_keys().await.unwrap(), 25);
    let mut ghost = key("ghost", None, None);
    ghost.name = "x".into();
    assert!(matches!(
        store.update_key(&ghost).await,
        Err(StoreError::NotFound(_))
    ));
}
both!(keys_pagination_and_updates, keys);

async fn users_and_deletion(store: &Store) {
    let user = UserRecord {
        id: "u1".into(),
        name: "ada".into(),
        team_id: None,
        role: "member".into(),
        limits: Limits::default(),
        created_at: 1,
    };
    store.insert_user(&user).await.unwrap();
    assert!(matches!(
        store
            .insert_user(&UserRecord {
                id: "u2".into(),
                ..user.clone()
            })
            .await,
        Err(StoreError::Conflict(_))
    ));
    store
        .insert_key(&key("uk", None, Some("u1")))
        .await
        .unwrap();
    store
        .insert_requests(&[RequestRecord {
            request_id: "by-ada".into(),
            key_id: "uk".into(),
            endpoint: "chat",
            ..Default::default()
        }])
        .await
        .unwrap();
    assert_eq!(store.list_users(None, None, 10).await.unwrap().len(), 1);
    store.delete_user("u1").await.unwrap();
    assert!(store.get_user("u1").await.unwrap().is_none());
    assert!(store.get_key("uk").await.unwrap().is_none());
    assert!(store.request_by_id("by-ada").await.unwrap().is_none());
    assert!(matches!(
        store.delete_user("u1").await,
        Err(StoreError::NotFound(_))
    ));
}
both!(deleting_a_user_deletes_their_records, users_and_deletion);

/// Rate limits of teams, users and keys survive every write and read path (including values
/// beyond 32 bits, and clearing).
async fn rate_limits(store: &Store) {
    store
        .insert_org(&plexus_store::OrgRecord {
            id: "o".into(),
            name: "O".into(),
            created_at: 1,
        })
        .await
        .unwrap();
    let mut team = TeamRecord {
        id: "t".into(),
        name: "T".into(),
        org_id: Some("o".into()),
        limits: Limits {
            max_budget_usd: Some(Nanos::from_usd(3.0)),
            budget_period: Some("1d".into()),
            rpm: Some(600),
            tpm: Some(100_000),
            tpd: Some(50_000_000_000),
            max_parallel: Some(20),
        },
        metadata: serde_json::json!({}),
        created_at: 1,
    };
    store.insert_team(&team).await.unwrap();
    assert_eq!(store.get_team("t").await.unwrap().unwrap(), team);
    assert_eq!(store.list_teams(None, 10).await.unwrap(), [team.clone()]);
    assert_eq!(store.teams_of_org("o").await.unwrap(), [team.clone()]);
    team.limits.rpm = None;
    team.limits.tpm = Some(5);
    team.limits.tpd = None;
    team.limits.max_parallel = Some(1);
    store.update_team(&team).await.unwrap();
    assert_eq!(store.get_team("t").await.unwrap().unwrap(), team);

    let mut user = UserRecord {
        id: "u".into(),
        name: "U".into(),
        team_id: Some("t".into()),
        role: "member".into(),
        limits: Limits {
            rpm: Some(10),
            tpd: Some(7),
            max_parallel: Some(2),
            ..Limits::default()
        },
        created_at: 1,
    };
    store.insert_user(&user).await.unwrap();
    assert_eq!(store.get_user("u").await.unwrap().unwrap(), user);
    assert_eq!(
        store.list_users(Some("t"), None, 10).await.unwrap(),
        [user.clone()]
    );
    user.limits.rpm = None;
    user.limits.tpm = Some(3_000_000_000);
    user.limits.tpd = None;
    user.limits.max_parallel = None;
    store.update_user(&user).await.unwrap();
    assert_eq!(store.get_user("u").await.unwrap().unwrap(), user);

    let mut k = key("rk", Some("t"), Some("u"));
    k.limits.tpd = Some(9_000_000_000);
    store.insert_key(&k).await.unwrap();
    assert_eq!(store.get_key("rk").await.unwrap().unwrap(), k);
    let mut update = plexus_store::KeyUpdate {
        limits: LimitsPatch {
            tpd: Some(None),
            ..Default::default()
        },
        ..Default::default()
    };
    update.clone().apply(&mut k);
    assert_eq!(k.limits.tpd, None);
    store.update_key(&k).await.unwrap();
    let (listed, _) = store
        .list_keys(&KeyFilter {
            user_id: Some("u".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(listed, [k.clone()]);
    update.limits.tpd = Some(Some(42));
    update.apply(&mut k);
    store.update_key(&k).await.unwrap();
    assert_eq!(
        store.get_key("rk").await.unwrap().unwrap().limits.tpd,
        Some(42)
    );
}
both!(rate_limits_round_trip, rate_limits);

async fn audit(store: &Store) {
    assert!(store.audit_tail().await.unwrap().is_none());
    let entry = |seq: i64| AuditEntry {
        seq,
        ts_ms: seq * 10,
        actor: "master".into(),
        action: if seq % 2 == 0 {
            "key.create"
        } else {
            "key.revoke"
        }
        .into(),
        target: format!("k{seq}"),
        outcome: "ok".into(),
        source: "127.0.0.1".into(),
        details: "{}".into(),
        prev_hash: format!("h{}", seq - 1),
        hash: format!("h{seq}"),
    };
    store
        .append_audit(&[entry(1), entry(2), entry(3)])
        .await
        .unwrap();
    assert_eq!(store.audit_tail().await.unwrap(), Some((3, "h3".into())));
    assert!(
        store.append_audit(&[entry(3)]).await.is_err(),
        "a sequence number is never reused"
    );
    let creates = store
        .list_audit(&AuditQuery {
            action: Some("key.create".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(creates.len(), 1);
    let after = store
        .list_audit(&AuditQuery {
            after_seq: Some(1),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(after.iter().map(|e| e.seq).collect::<Vec<_>>(), [2, 3]);
}
both!(audit_log_append_and_query, audit);

async fn spend(store: &Store) {
    let rec =
        |key: &str, user: Option<&str>, team: Option<&str>, model: &str, ts: i64, cost: f64| {
            RequestRecord {
                ts_ms: ts,
                request_id: format!("{key}-{ts}"),
                key_id: key.into(),
                user_id: user.map(str::to_owned),
                team_id: team.map(str::to_owned),
                endpoint: "chat",
                model: model.into(),
                prompt_tokens: 10,
                completion_tokens: 5,
                cost: Nanos::from_usd(cost),
                ..Default::default()
            }
        };
    store
        .insert_requests(&[
            rec("k1", Some("ada"), Some("red"), "gpt", 1_000, 0.25),
            rec("k1", Some("ada"), Some("red"), "gpt", 86_400_000 + 5, 0.5),
            rec(
                "k2",
                Some("bob"),
                Some("red"),
                "claude",
                86_400_000 + 6,
                1.0,
            ),
            rec("k3", None, Some("blue"), "gpt", 86_400_000 + 7, 2.0),
        ])
        .await
        .unwrap();
    let usd = Nanos::from_usd;
    assert_eq!(store.spend_since("key", "k1", 0).await.unwrap(), usd(0.75));
    assert_eq!(
        store.spend_since("key", "k1", 2_000).await.unwrap(),
        usd(0.5)
    );
    assert_eq!(
        store.spend_since("team", "red", 0).await.unwrap(),
        usd(1.75)
    );
    assert_eq!(
        store.spend_since("user", "nobody", 0).await.unwrap(),
        Nanos::ZERO
    );
    let by_model = store.spend_report("model", 0, None, None).await.unwrap();
    assert_eq!(by_model[0].group.as_deref(), Some("gpt"));
    assert_eq!(by_model[0].cost, usd(2.75));
    assert_eq!(by_model[0].requests, 3);
    assert_eq!(by_model[0].prompt_tokens, 30);
    let red_days = store
        .spend_report("day", 0, Some("red"), None)
        .await
        .unwrap();
    let mut days: Vec<(Option<String>, Nanos)> =
        red_days.into_iter().map(|r| (r.group, r.cost)).collect();
    days.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        days,
        [
            (Some("0".to_owned()), usd(0.25)),
            (Some("1".to_owned()), usd(1.5))
        ]
    );
    let by_user = store
        .spend_report("user", 0, None, Some("bob"))
        .await
        .unwrap();
    assert_eq!(by_user.len(), 1);
    assert_eq!(by_user[0].group.as_deref(), Some("bob"));

    // Exact sums: three costs of $0.0000207 are $0.0000621, not 0.00006210000000000002.
    store
        .insert_requests(&[
            rec("k4", None, None, "tiny", 10, 0.0000207),
            rec("k4", None, None, "tiny", 11, 0.0000207),
            rec("k4", None, None, "tiny", 12, 0.0000207),
        ])
        .await
        .unwrap();
    let total = store.spend_since("key", "k4", 0).await.unwrap();
    assert_eq!(total, Nanos(62_100));
    assert_eq!(total.to_string(), "0.0000621");

    // Requests refused before they named a model are grouped under no model, not "".
    store
        .insert_requests(&[
            rec("k5", None, None, "", 13, 0.0),
            rec("k5", None, None, "", 14, 0.0),
        ])
        .await
        .unwrap();
    let by_model = store.spend_report("model", 0, None, None).await.unwrap();
    let unnamed: Vec<_> = by_model.iter().filter(|r| r.group.is_none()).collect();
    assert_eq!(unnamed.len(), 1, "{by_model:?}");
    assert_eq!((unnamed[0].requests, unnamed[0].cost), (2, Nanos::ZERO));
    assert!(by_model.iter().all(|r| r.group.as_deref() != Some("")));
}
both!(spend_by_scope_and_report, spend);

/// The lineage columns (migration 0008) survive the write and every read path.
async fn lineage(store: &Store) {
    let rec = RequestRecord {
        ts_ms: 9,
        request_id: "gw-1".into(),
        client_request_id: Some("client-abc".into()),
        parent_request_id: Some("gw-0".into()),
        step: Some(3),
        key_id: "system".into(),
        overhead_team_id: Some("t1".into()),
        endpoint: "chat",
        status: 200,
        ..Default::default()
    };
    store.insert_requests(&[rec]).await.unwrap();
    let row = store.request_by_id("gw-1").await.unwrap().unwrap();
    assert_eq!(row.client_request_id.as_deref(), Some("client-abc"));
    assert_eq!(row.parent_request_id.as_deref(), Some("gw-0"));
    assert_eq!(row.step, Some(3));
    assert_eq!(row.overhead_team_id.as_deref(), Some("t1"));
    let recent = store.recent_requests(1).await.unwrap();
    assert_eq!(recent, [row]);

    // Absent values stay absent.
    store
        .insert_requests(&[RequestRecord {
            request_id: "gw-2".into(),
            endpoint: "chat",
            ..Default::default()
        }])
        .await
        .unwrap();
    let plain = store.request_by_id("gw-2").await.unwrap().unwrap();
    assert_eq!(plain.client_request_id, None);
    assert_eq!(plain.parent_request_id, None);
    assert_eq!(plain.step, None);
    assert_eq!(plain.overhead_team_id, None);
}
both!(lineage_round_trip, lineage);

/// The calls made for a request come back in step order (unnumbered ones last), and only
/// those of that parent.
async fn children(store: &Store) {
    let child = |id: &str, parent: &str, step: Option<u32>| RequestRecord {
        ts_ms: 1,
        request_id: id.into(),
        parent_request_id: Some(parent.into()),
        step,
        key_id: "k".into(),
        endpoint: "chat",
        ..Default::default()
    };
    store
        .insert_requests(&[
            child("c2", "p", Some(2)),
            child("judge", "p", None),
            child("c0", "p", Some(0)),
            child("other", "q", Some(1)),
            child("c1", "p", Some(1)),
        ])
        .await
        .unwrap();
    let got: Vec<(String, Option<u32>)> = store
        .requests_by_parent("p")
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.request_id, r.step))
        .collect();
    assert_eq!(
        got,
        [
            ("c0".to_owned(), Some(0)),
            ("c1".to_owned(), Some(1)),
            ("c2".to_owned(), Some(2)),
            ("judge".to_owned(), None),
        ]
    );
    assert!(store.requests_by_parent("none").await.unwrap().is_empty());
}
both!(requests_by_parent_in_step_order, children);

/// A composite request counts once, with its children's cost; system rows never count
/// against a caller and are reported per originating team as cache overhead.
async fn lineage_spend(store: &Store) {
    let row =
        |id: &str, parent: Option<&str>, key: &str, team: Option<&str>, cost: f64| RequestRecord {
            ts_ms: 1_000,
            request_id: id.into(),
            parent_request_id: parent.map(str::to_owned),
            key_id: key.into(),
            user_id: team.map(|_| "ada".to_owned()),
            team_id: team.map(str::to_owned),
            endpoint: "chat",
            model: "m".into(),
            prompt_tokens: if parent.is_some() { 10 } else { 0 },
            completion_tokens: if parent.is_some() { 4 } else { 0 },
            cost: Nanos::from_usd(cost),
            ..Default::default()
        };
    let mut first = row("child-1", Some("parent"), "k1", Some("t1"), 0.25);
    first.step = Some(0);
    let mut second = row("child-2", Some("parent"), "k1", Some("t1"), 0.5);
    second.step = Some(1);
    let mut judge = row("judge-1", Some("parent"), "system", None, 0.125);
    judge.overhead_team_id = Some("t1".into());
    judge.prompt_tokens = 7;
    let mut stray = row("judge-2", None, "system", None, 0.0625);
    stray.prompt_tokens = 1;
    store
        .insert_requests(&[
            row("parent", None, "k1", Some("t1"), 0.0),
            first,
            second,
            judge,
            stray,
        ])
        .await
        .unwrap();

    // Budgets: the children's cost, once; the judge's never.
    let usd = Nanos::from_usd;
    assert_eq!(store.spend_since("key", "k1", 0).await.unwrap(), usd(0.75));
    assert_eq!(store.spend_since("team", "t1", 0).await.unwrap(), usd(0.75));
    assert_eq!(
        store.spend_since("user", "ada", 0).await.unwrap(),
        usd(0.75)
    );
    assert_eq!(
        store.spend_since("key", "system", 0).await.unwrap(),
        usd(0.1875)
    );

    // The report: one request, the children's summed cost and tokens.
    let by_key = store.spend_report("key", 0, None, None).await.unwrap();
    let group = |rows: &[plexus_store::SpendRow], g: &str| {
        rows.iter()
            .find(|r| r.group.as_deref() == Some(g))
            .cloned()
            .unwrap()
    };
    let k1 = group(&by_key, "k1");
    assert_eq!(
        (k1.requests, k1.prompt_tokens, k1.completion_tokens, k1.cost),
        (1, 20, 8, usd(0.75))
    );
    let system = group(&by_key, "system");
    assert_eq!(system.cost, usd(0.1875));
    let t1 = store
        .spend_report("team", 0, Some("t1"), None)
        .await
        .unwrap();
    assert_eq!(t1.len(), 1);
    assert_eq!((t1[0].group.as_deref(), t1[0].requests), (Some("t1"), 1));
    assert_eq!(t1[0].cost, usd(0.75), "system rows are not the team's");
    let by_team = store.spend_report("team", 0, None, None).await.unwrap();
    assert_eq!(group(&by_team, "t1").cost, usd(0.75));
    let ada = store
        .spend_report("user", 0, None, Some("ada"))
        .await
        .unwrap();
    assert_eq!(ada.len(), 1);
    assert_eq!((ada[0].requests, ada[0].cost), (1, usd(0.75)));

    // Cache overhead, per originating team.
    let overhead = store.overhead_by_team(0, None).await.unwrap();
    assert_eq!(overhead.len(), 2);
    let t1_overhead = group(&overhead, "t1");
    assert_eq!(
        (
            t1_overhead.requests,
            t1_overhead.prompt_tokens,
            t1_overhead.cost
        ),
        (1, 7, usd(0.125))
    );
    let unowned = group(&overhead, "");
    assert_eq!((unowned.requests, unowned.cost), (1, usd(0.0625)));
    let only_t1 = store.overhead_by_team(0, Some("t1")).await.unwrap();
    assert_eq!(only_t1.len(), 1);
    assert_eq!(only_t1[0].group.as_deref(), Some("t1"));
    assert!(store
        .overhead_by_team(0, Some("t2"))
        .await
        .unwrap()
        .is_empty());
    assert!(store
        .overhead_by_team(2_000, None)
        .await
        .unwrap()
        .is_empty());
}
both!(composite_and_system_spend, lineage_spend);

/// A selected request keeps its decision and the prompt's embedding (exact f32 values, the
/// owner too); an ordinary one has neither.
async fn route_and_embedding(store: &Store) {
    let embedding: std::sync::Arc<[f32]> = vec![0.25, -1.5, f32::MIN_POSITIVE, 3.0e-8].into();
    store
        .insert_requests(&[
            RequestRecord {
                ts_ms: 1,
                request_id: "auto-1".into(),
                key_id: "k".into(),
                user_id: Some("ada".into()),
                team_id: Some("red".into()),
                endpoint: "chat",
                model: "auto".into(),
                status: 200,
                route: Some(r#"{"served":"gpt","scores":{"gpt":0.9}}"#.into()),
                prompt_embedding: Some(embedding.clone()),
                ..Default::default()
            },
            RequestRecord {
                ts_ms: 2,
                request_id: "plain".into(),
                key_id: "k".into(),
                endpoint: "chat",
                model: "gpt".into(),
                status: 200,
                ..Default::default()
            },
        ])
        .await
        .unwrap();
    let got = store.request_by_id("auto-1").await.unwrap().unwrap();
    assert_eq!(
        got.route.as_deref(),
        Some(r#"{"served":"gpt","scores":{"gpt":0.9}}"#)
    );
    assert_eq!(got.prompt_embedding.as_deref(), Some(&embedding[..]));
    assert_eq!(got.user_id.as_deref(), Some("ada"));
    assert_eq!(got.team_id.as_deref(), Some("red"));
    let plain = store.request_by_id("plain").await.unwrap().unwrap();
    assert_eq!(plain.route, None);
    assert_eq!(plain.prompt_embedding, None);
    assert_eq!(plain.user_id, None);
}
both!(route_and_prompt_embedding_round_trip, route_and_embedding);

/// Feedback pages in id order; a new feedback on the same request replaces the old one and
/// comes back past the last id a reader saw.
async fn feedback(store: &Store) {
    let row = |request_id: &str, score: f64| FeedbackRow {
        request_id: request_id.into(),
        key_id: "k1".into(),
        model: "gpt".into(),
        score,
        comment: None,
        embedding: None,
        created_at_ms: 10,
    };
    assert!(store.feedback_page(0, 10).await.unwrap().is_empty());
    let first = FeedbackRow {
        comment: Some("great answer".into()),
        embedding: Some(vec![0.5, -0.25, 1.0e-3]),
        ..row("r1", 1.0)
    };
    store.upsert_feedback(&first).await.unwrap();
    store.upsert_feedback(&row("r2", 0.0)).await.unwrap();
    store.upsert_feedback(&row("r3", 0.5)).await.unwrap();
    let page = store.feedback_page(0, 10).await.unwrap();
    assert_eq!(page.len(), 3);
    assert!(page.windows(2).all(|w| w[0].0 < w[1].0), "id order");
    assert_eq!(page[0].1, first, "every field round-trips");
    assert_eq!(page[1].1.request_id, "r2");
    // Paging: at most `limit`, then on from the last id.
    let head = store.feedback_page(0, 2).await.unwrap();
    assert_eq!(head.len(), 2);
    let rest = store.feedback_page(head[1].0, 2).await.unwrap();
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].1.request_id, "r3");
    let last = rest[0].0;
    assert!(store.feedback_page(last, 10).await.unwrap().is_empty());

    // Re-scoring r1 replaces it, under a new id past `last`.
    let again = FeedbackRow {
        key_id: "master".into(),
        model: "sonnet".into(),
        score: 0.25,
        comment: None,
        embedding: None,
        created_at_ms: 20,
        request_id: "r1".into(),
    };
    store.upsert_feedback(&again).await.unwrap();
    let newer = store.feedback_page(last, 10).await.unwrap();
    assert_eq!(newer.len(), 1);
    assert!(newer[0].0 > last);
    assert_eq!(newer[0].1, again);
    let all = store.feedback_page(0, 10).await.unwrap();
    assert_eq!(all.len(), 3, "one row per request");
    assert_eq!(
        all.iter()
            .map(|(_, r)| r.request_id.as_str())
            .collect::<Vec<_>>(),
        ["r2", "r3", "r1"]
    );
    let (id, one) = store.feedback_for("r1").await.unwrap().unwrap();
    assert_eq!((id, one), newer[0].clone());
    assert!(store.feedback_for("nope").await.unwrap().is_none());
}
both!(feedback_upsert_and_pages, feedback);

fn stored(id: &str, previous: Option<&str>, status: &str, created_at_ms: i64) -> StoredResponse {
    StoredResponse {
        id: id.into(),
        key_id: "k1".into(),
        previous_response_id: previous.map(str::to_owned),
        status: status.into(),
        background: status == "queued",
        input_items: format!(r#"[{{"type":"message","role":"user","content":"{id}"}}]"#),
        response: format!(r#"{{"id":"{id}","output":[]}}"#),
        interrupted: None,
        instance_id: Some("i1".into()),
        heartbeat_ms: Some(created_at_ms),
        created_at_ms,
        updated_at_ms: created_at_ms,
    }
}

async fn responses(store: &Store) {
    store
        .put_response(&stored("r1", None, "completed", 10))
        .await
        .unwrap();
    store
        .put_response(&stored("r2", Some("r1"), "completed", 20))
        .await
        .unwrap();
    store
        .put_response(&stored("r3", Some("r2"), "completed", 30))
        .await
        .unwrap();
    store
        .put_response(&stored("other", None, "completed", 30))
        .await
        .unwrap();
    let chain = store.response_chain("r3").await.unwrap();
    assert_eq!(
        chain.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        ["r1", "r2", "r3"],
        "oldest first"
    );
    assert_eq!(chain[2], stored("r3", Some("r2"), "completed", 30));
    assert!(store.response_chain("nope").await.unwrap().is_empty());
    assert_eq!(store.response_chain("r1").await.unwrap().len(), 1);

    // A background run: queued → in_progress; a cancel and a finish cannot both win.
    store
        .put_response(&stored("bg", None, "queued", 40))
        .await
        .unwrap();
    assert!(store
        .transition_response("bg", &RUNNING, "in_progress", None, 41)
        .await
        .unwrap());
    assert_eq!(
        store
            .still_running(&["bg".into(), "r1".into()], 42, true)
            .await
            .unwrap(),
        ["bg"]
    );
    assert_eq!(
        store
            .response_by_id("bg")
            .await
            .unwrap()
            .unwrap()
            .heartbeat_ms,
        Some(42)
    );
    assert!(store
        .transition_response("bg", &RUNNING, "cancelled", None, 43)
        .await
        .unwrap());
    assert!(!store
        .finish_response("bg", "completed", "{}", 44)
        .await
        .unwrap());
    let bg = store.response_by_id("bg").await.unwrap().unwrap();
    assert_eq!((bg.status.as_str(), bg.updated_at_ms), ("cancelled", 43));
    assert!(store
        .still_running(&["bg".into()], 45, false)
        .await
        .unwrap()
        .is_empty());

    store
        .put_response(&stored("bg2", None, "queued", 50))
        .await
        .unwrap();
    assert!(store
        .finish_response("bg2", "completed", r#"{"done":true}"#, 51)
        .await
        .unwrap());
    assert!(!store
        .transition_response("bg2", &RUNNING, "incomplete", Some("shutdown"), 52)
        .await
        .unwrap());
    let bg2 = store.response_by_id("bg2").await.unwrap().unwrap();
    assert_eq!(bg2.response, r#"{"done":true}"#);
    assert_eq!(bg2.interrupted, None);

    // Retention keeps running runs; deleting breaks the chain there.
    store
        .put_response(&stored("old-running", None, "queued", 1))
        .await
        .unwrap();
    assert_eq!(store.delete_responses_before(25).await.unwrap(), 2);
    assert!(store.response_by_id("old-running").await.unwrap().is_some());
    assert_eq!(
        store.response_chain("r3").await.unwrap().len(),
        1,
        "r2 is gone: the chain stops at r3"
    );
    assert!(store.delete_response("r3").await.unwrap());
    assert!(!store.delete_response("r3").await.unwrap());
}
both!(stored_responses, responses);

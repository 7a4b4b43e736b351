//! The Redis backend against a real Redis (`PLEXUS_TEST_REDIS_URL`, default
//! `redis://127.0.0.1:6379`). Every test works under its own random key prefix and deletes its
//! keys at the end. Waits poll a condition with a deadline; the only timing assertions are
//! upper bounds on how long a call may take when Redis is away.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use plexus_limits::rate::{Kind, LocalLimiter, Quota, Subject};
use plexus_limits::redis::{BudgetRefusal, RedisLimitError, RedisLimiter};
use plexus_limits::{BudgetKey, Limit, Nanos};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

const DAY_MS: i64 = 86_400_000;

fn url() -> String {
    std::env::var("PLEXUS_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

fn prefix() -> String {
    format!("plexus-test:{}:", uuid::Uuid::new_v4().simple())
}

/// A limiter with a timeout generous enough for a loaded machine.
fn limiter(prefix: &str) -> RedisLimiter {
    RedisLimiter::new(&url(), prefix, Duration::from_secs(2)).unwrap()
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn quota(rpm: Option<u64>, tpm: Option<u64>, par: Option<u64>) -> Quota {
    Quota {
        rpm,
        tpm,
        tpd: None,
        max_parallel: par,
    }
}

fn budget(scope: &'static str, id: &str) -> BudgetKey {
    BudgetKey {
        scope,
        id: id.into(),
    }
}

fn usd(v: f64) -> Nanos {
    Nanos::from_usd(v)
}

/// Deletes every key under the prefix.
async fn cleanup(prefix: &str) {
    let client = redis::Client::open(url()).unwrap();
    let mut con = client.get_multiplexed_async_connection().await.unwrap();
    let mut cursor: u64 = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}*"))
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut con)
            .await
            .unwrap();
        if !keys.is_empty() {
            redis::cmd("DEL")
                .arg(&keys)
                .query_async::<()>(&mut con)
                .await
                .unwrap();
        }
        if next == 0 {
            break;
        }
        cursor = next;
    }
}

/// Polls `check` until it holds (10 s at most).
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_instances_together_admit_exactly_the_limit() {
    let p = prefix();
    let instances = [limiter(&p), limiter(&p), limiter(&p)];
    for l in &instances {
        l.ping().await.unwrap(); // connect before the clock starts
    }
    let rpm = Subject::new("key", "hammer", quota(Some(100), None, None));
    let tpd = Subject::new(
        "team",
        "hammer",
        Quota {
            tpd: Some(100),
            ..Quota::default()
        },
    );

    let started = Instant::now();
    let mut tasks = JoinSet::new();
    for t in 0..30 {
        let l = instances[t % 3].clone();
        let (rpm, tpd) = (rpm.clone(), tpd.clone());
        tasks.spawn(async move {
            let (mut by_rpm, mut by_tpd) = (0usize, 0usize);
            for _ in 0..20 {
                match l.acquire(std::slice::from_ref(&rpm), 0).await.unwrap() {
                    Ok(_) => by_rpm += 1,
                    Err(r) => assert_eq!(r.kind, Kind::Requests),
                }
                match l.acquire(std::slice::from_ref(&tpd), 1).await.unwrap() {
                    Ok(_) => by_tpd += 1,
                    Err(r) => assert_eq!(r.kind, Kind::TokensPerDay),
                }
            }
            (by_rpm, by_tpd)
        });
    }
    let (mut by_rpm, mut by_tpd) = (0, 0);
    while let Some(r) = tasks.join_next().await {
        let (a, b) = r.unwrap();
        by_rpm += a;
        by_tpd += b;
    }
    let elapsed = started.elapsed();

    // 600 attempts each. GCRA allows the whole minute's allowance as a burst (100), then
    // refills continuously: one request every 600 ms. So the burst is admitted in full, plus
    // at most one request per 600 ms the hammering lasted (a run under 1.2 s: at most 102).
    let refills = (elapsed.as_millis() / 600) as usize + 1;
    assert!(
        (100..=100 + refills).contains(&by_rpm),
        "admitted {by_rpm} with rpm 100 in {elapsed:?}"
    );
    // Tokens per day refill one token every 864 s: exactly the limit gets through.
    assert_eq!(by_tpd, 100, "tpd 100 admits exactly 100 one-token requests");
    cleanup(&p).await;
}

#[tokio::test]
async fn admission_is_all_or_nothing_across_subjects() {
    let p = prefix();
    let l = limiter(&p);
    let key = Subject::new("key", "k", quota(Some(10), None, None));
    let team = Subject::new("team", "t", quota(Some(2), None, None));
    let both = [key.clone(), team];
    l.acquire(&both, 0).await.unwrap().unwrap();
    l.acquire(&both, 0).await.unwrap().unwrap();
    let refused = l.acquire(&both, 0).await.unwrap().unwrap_err();
    assert_eq!((refused.scope, refused.kind), ("team", Kind::Requests));
    assert_eq!(refused.limit, 2);
    // The key was charged twice, not three times: this request leaves 7 of 10.
    let (_, snap) = l.acquire(&[key], 0).await.unwrap().unwrap();
    assert_eq!(snap.requests.unwrap().remaining, 7);
    cleanup(&p).await;
}

#[tokio::test]
async fn tokens_are_reserved_then_reconciled() {
    let p = prefix();
    let l = limiter(&p);
    let s = [Subject::new("key", "tok", quota(None, Some(1000), None))];
    let (mut hold, snap) = l.acquire(&s, 600).await.unwrap().unwrap();
    assert_eq!(snap.tokens.unwrap().remaining, 400);
    assert_eq!(snap.tokens.unwrap().limit, 1000);
    let refused = l.acquire(&s, 600).await.unwrap().unwrap_err();
    assert_eq!(refused.kind, Kind::TokensPerMinute);
    assert!(refused.retry_after.is_some(), "fits later");

    // The call used 100 tokens: 500 come back once the background task has applied it.
    hold.settle_tokens(100);
    let deadline = Instant::now() + Duration::from_secs(10);
    let snap = loop {
        if let Ok((_, snap)) = l.acquire(&s, 600).await.unwrap() {
            break snap;
        }
        assert!(Instant::now() < deadline, "the refund never landed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // 1000 - 100 - 600, plus what refilled meanwhile (one token per 60 ms).
    let left = snap.tokens.unwrap().remaining;
    assert!((300..400).contains(&left), "{left} left");

    let never = l.acquire(&s, 2000).await.unwrap().unwrap_err();
    assert_eq!(never.retry_after, None, "more than the limit never fits");
    assert!(never.message().contains("alone exceeds"));

    // A charge beyond the estimate moves the limit further away.
    let (mut over, _) = l
        .acquire(
            &[Subject::new("key", "tok2", quota(None, Some(1000), None))],
            100,
        )
        .await
        .unwrap()
        .unwrap();
    over.settle_tokens(900);
    over.finish();
    let s2 = [Subject::new("key", "tok2", quota(None, Some(1000), None))];
    eventually("the extra 800 tokens are charged", || async {
        l.acquire(&s2, 200).await.unwrap().is_err()
    })
    .await;
    cleanup(&p).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_slots_are_shared_across_instances() {
    let p = prefix();
    let (a, b) = (limiter(&p), limiter(&p));
    let s = [Subject::new("key", "par", quota(None, None, Some(2)))];
    let (h1, _) = a.acquire(&s, 0).await.unwrap().unwrap();
    let (h2, _) = b.acquire(&s, 0).await.unwrap().unwrap();
    for l in [&a, &b] {
        let refused = l.acquire(&s, 0).await.unwrap().unwrap_err();
        assert_eq!(refused.kind, Kind::Parallel);
        assert_eq!(refused.limit, 2);
        assert_eq!(refused.retry_after, Some(Duration::from_secs(1)));
    }
    // Instance A's request ends: instance B gets the slot.
    drop(h1);
    let deadline = Instant::now() + Duration::from_secs(10);
    let h3 = loop {
        if let Ok((h, _)) = b.acquire(&s, 0).await.unwrap() {
            break h;
        }
        assert!(Instant::now() < deadline, "the slot was never released");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(a.acquire(&s, 0).await.unwrap().is_err(), "full again");
    h2.finish();
    drop(h3);
    eventually("both slots are free", || async {
        let first = a.acquire(&s, 0).await.unwrap();
        let second = a.acquire(&s, 0).await.unwrap();
        first.is_ok() && second.is_ok()
    })
    .await;
    cleanup(&p).await;
}

#[tokio::test]
async fn leases_of_a_crashed_holder_expire() {
    let p = prefix();
    let l = limiter(&p).with_lease_ttl(Duration::from_millis(200));
    let s = [Subject::new("key", "leak", quota(None, None, Some(1)))];
    let (leaked, _) = l.acquire(&s, 0).await.unwrap().unwrap();
    std::mem::forget(leaked); // never released, as if the instance had died
    assert_eq!(
        l.acquire(&s, 0).await.unwrap().unwrap_err().kind,
        Kind::Parallel
    );
    eventually("the leaked lease expires", || async {
        l.acquire(&s, 0).await.unwrap().is_ok()
    })
    .await;
    cleanup(&p).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn budgets_are_shared_across_instances() {
    let p = prefix();
    let (a, b) = (limiter(&p), limiter(&p));
    let k = budget("key", "spender");
    let limit = Limit {
        max: usd(1.0),
        period_ms: DAY_MS,
    };
    let budgets = vec![(k.clone(), limit)];
    let now = now_ms();

    // First use in the period: the caller must seed from its database.
    match a.budget_reserve(&budgets, usd(0.3), now).await.unwrap() {
        Err(BudgetRefusal::NeedsSeed(keys)) => assert_eq!(keys, vec![k.clone()]),
        other => panic!("expected NeedsSeed, got {other:?}"),
    }
    assert_eq!(a.budget_usage(&k, &limit, now).await.unwrap(), None);
    a.budget_seed(&k, &limit, now, usd(0.0)).await.unwrap();
    b.budget_seed(&k, &limit, now, usd(0.5)).await.unwrap(); // too late: the first seed wins
    assert_eq!(
        b.budget_usage(&k, &limit, now).await.unwrap(),
        Some((Nanos::ZERO, Nanos::ZERO))
    );

    // Ten in flight at 0.3 worst case, from two instances: only three fit in $1.
    let mut tasks = JoinSet::new();
    for i in 0..10 {
        let l = if i % 2 == 0 { a.clone() } else { b.clone() };
        let budgets = budgets.clone();
        tasks.spawn(async move { l.budget_reserve(&budgets, usd(0.3), now).await.unwrap() });
    }
    let mut held = Vec::new();
    while let Some(r) = tasks.join_next().await {
        match r.unwrap() {
            Ok(r) => held.push(r),
            Err(BudgetRefusal::Exceeded(e)) => {
                assert_eq!(e.key, k);
                assert_eq!(e.limit, usd(1.0));
                assert_eq!(e.resets_at_ms, limit.period_start(now) + DAY_MS);
                assert!(e.spent + e.reserved <= usd(0.9));
            }
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(held.len(), 3);
    assert_eq!(held[0].amount(), usd(0.3));
    // Each reports what was left after it: 70%, 40% and 10%, in some order.
    let mut shares: Vec<i64> = held
        .iter()
        .map(|r| (r.remaining_share().unwrap() * 100.0).round() as i64)
        .collect();
    shares.sort_unstable();
    assert_eq!(shares, [10, 40, 70]);
    let (spent, reserved) = a.budget_usage(&k, &limit, now).await.unwrap().unwrap();
    assert_eq!((spent, reserved), (Nanos::ZERO, usd(0.9)));

    for r in held {
        r.settle(usd(0.1));
    }
    eventually("the settlements land", || async {
        let (s, r) = a.budget_usage(&k, &limit, now).await.unwrap().unwrap();
        (s, r) == (usd(0.3), Nanos::ZERO)
    })
    .await;

    // Spend is 0.3: two more worst cases fit, a third does not; dropped holds charge nothing.
    let r1 = a
        .budget_reserve(&budgets, usd(0.3), now)
        .await
        .unwrap()
        .unwrap();
    let r2 = b
        .budget_reserve(&budgets, usd(0.3), now)
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(
        a.budget_reserve(&budgets, usd(0.3), now).await.unwrap(),
        Err(BudgetRefusal::Exceeded(_))
    ));
    drop(r1);
    drop(r2);
    eventually("dropped holds are released", || async {
        let (s, r) = a.budget_usage(&k, &limit, now).await.unwrap().unwrap();
        (s, r) == (usd(0.3), Nanos::ZERO)
    })
    .await;

    // A spent budget refuses even free requests.
    let r = a
        .budget_reserve(&budgets, usd(0.7), now)
        .await
        .unwrap()
        .unwrap();
    r.settle(usd(0.7));
    eventually("the budget is spent", || async {
        matches!(
            b.budget_reserve(&budgets, usd(0.0), now).await.unwrap(),
            Err(BudgetRefusal::Exceeded(_))
        )
    })
    .await;

    // The next period starts unseeded.
    let next = limit.period_start(now) + DAY_MS;
    assert!(matches!(
        a.budget_reserve(&budgets, usd(0.3), next).await.unwrap(),
        Err(BudgetRefusal::NeedsSeed(_))
    ));
    cleanup(&p).await;
}

#[tokio::test]
async fn budgets_are_all_or_nothing_and_seeds_carry_recorded_spend() {
    let p = prefix();
    let l = limiter(&p);
    let now = now_ms();
    let day = |v| Limit {
        max: usd(v),
        period_ms: DAY_MS,
    };
    let (k, team) = (budget("key", "k"), budget("team", "red"));
    let both = [(k.clone(), day(10.0)), (team.clone(), day(0.5))];
    match l.budget_reserve(&both, usd(0.4), now).await.unwrap() {
        Err(BudgetRefusal::NeedsSeed(keys)) => assert_eq!(keys, vec![k.clone(), team.clone()]),
        other => panic!("expected NeedsSeed, got {other:?}"),
    }
    l.budget_seed(&k, &day(10.0), now, usd(2.0)).await.unwrap();
    match l.budget_reserve(&both, usd(0.4), now).await.unwrap() {
        Err(BudgetRefusal::NeedsSeed(keys)) => assert_eq!(keys, vec![team.clone()]),
        other => panic!("expected NeedsSeed, got {other:?}"),
    }
    l.budget_seed(&team, &day(0.5), now, usd(0.0))
        .await
        .unwrap();

    let held = l
        .budget_reserve(&both, usd(0.4), now)
        .await
        .unwrap()
        .unwrap();
    match l.budget_reserve(&both, usd(0.4), now).await.unwrap() {
        Err(BudgetRefusal::Exceeded(e)) => {
            assert_eq!(e.key, team);
            assert_eq!(e.reserved, usd(0.4));
        }
        other => panic!("expected Exceeded, got {other:?}"),
    }
    let (spent, reserved) = l.budget_usage(&k, &day(10.0), now).await.unwrap().unwrap();
    assert_eq!(
        (spent, reserved),
        (usd(2.0), usd(0.4)),
        "the seed's recorded spend, and nothing reserved by the refusal"
    );
    drop(held);
    cleanup(&p).await;
}

#[tokio::test]
async fn budget_reservations_of_a_crashed_holder_expire() {
    let p = prefix();
    let l = limiter(&p).with_lease_ttl(Duration::from_millis(200));
    let now = now_ms();
    let k = budget("user", "u");
    let limit = Limit {
        max: usd(1.0),
        period_ms: DAY_MS,
    };
    l.budget_seed(&k, &limit, now, usd(0.0)).await.unwrap();
    let budgets = [(k.clone(), limit)];
    std::mem::forget(
        l.budget_reserve(&budgets, usd(0.8), now)
            .await
            .unwrap()
            .unwrap(),
    );
    assert!(l
        .budget_reserve(&budgets, usd(0.8), now)
        .await
        .unwrap()
        .is_err());
    eventually("the leaked reservation expires", || async {
        l.budget_reserve(&budgets, usd(0.8), now)
            .await
            .unwrap()
            .is_ok()
    })
    .await;
    cleanup(&p).await;
}

#[tokio::test]
async fn snapshot_matches_the_local_backend() {
    let p = prefix();
    let l = limiter(&p);
    let local = LocalLimiter::new();
    let s = [Subject::new("key", "hdr", quota(Some(6), None, None))];
    let t0 = 1_000_000_000_000;
    for _ in 0..6 {
        let (_, remote) = l.acquire(&s, 0).await.unwrap().unwrap();
        let (_, here) = local.acquire(&s, 0, t0).unwrap();
        let (remote, here) = (remote.requests.unwrap(), here.requests.unwrap());
        assert_eq!(remote.limit, here.limit);
        assert_eq!(remote.remaining, here.remaining);
        // The local clock stood still; Redis's moved on a little since the first request.
        assert!(remote.reset <= here.reset, "{remote:?} vs {here:?}");
        assert!(
            here.reset - remote.reset < Duration::from_secs(5),
            "{remote:?} vs {here:?}"
        );
    }
    let remote = l.acquire(&s, 0).await.unwrap().unwrap_err();
    let here = local.acquire(&s, 0, t0).unwrap_err();
    assert_eq!((remote.kind, remote.limit), (here.kind, here.limit));
    let (r, h) = (remote.retry_after.unwrap(), here.retry_after.unwrap());
    assert_eq!(h, Duration::from_secs(10));
    assert!(r <= h && h - r < Duration::from_secs(5), "{r:?} vs {h:?}");
    cleanup(&p).await;
}

#[tokio::test]
async fn shutdown_applies_what_is_queued() {
    let p = prefix();
    let l = limiter(&p);
    let s = [Subject::new("key", "bye", quota(None, None, Some(3)))];
    let mut holds = Vec::new();
    for _ in 0..3 {
        holds.push(l.acquire(&s, 0).await.unwrap().unwrap().0);
    }
    let now = now_ms();
    let k = budget("key", "bye");
    let limit = Limit {
        max: usd(1.0),
        period_ms: DAY_MS,
    };
    l.budget_seed(&k, &limit, now, usd(0.0)).await.unwrap();
    let r = l
        .budget_reserve(&[(k.clone(), limit)], usd(0.5), now)
        .await
        .unwrap()
        .unwrap();
    drop(holds);
    r.settle(usd(0.25));
    l.shutdown().await;
    l.shutdown().await; // idempotent

    let other = limiter(&p);
    for _ in 0..3 {
        other.acquire(&s, 0).await.unwrap().unwrap();
    }
    let (spent, reserved) = other.budget_usage(&k, &limit, now).await.unwrap().unwrap();
    assert_eq!((spent, reserved), (usd(0.25), Nanos::ZERO));
    other.shutdown().await;
    cleanup(&p).await;
}

#[tokio::test]
async fn redis_down_answers_unavailable_promptly() {
    let l = RedisLimiter::new(
        "redis://127.0.0.1:1",
        "plexus-test:",
        Duration::from_millis(100),
    )
    .unwrap();
    let s = [Subject::new("key", "k", quota(Some(10), None, None))];

    let started = Instant::now();
    let err = l.acquire(&s, 0).await.unwrap_err();
    assert!(matches!(err, RedisLimitError::Unavailable(_)), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );

    // During the backoff Redis is not even tried.
    for _ in 0..20 {
        let started = Instant::now();
        let err = l.acquire(&s, 0).await.unwrap_err();
        assert!(err.to_string().contains("backing off"), "{err}");
        assert!(started.elapsed() < Duration::from_millis(100));
    }
    assert!(l.ping().await.is_err());
    let k = budget("key", "k");
    let limit = Limit {
        max: usd(1.0),
        period_ms: DAY_MS,
    };
    assert!(l.budget_reserve(&[(k, limit)], usd(0.1), 0).await.is_err());

    // Nothing to check: no Redis needed.
    let free = [Subject::new("key", "k", Quota::default())];
    assert!(l.acquire(&free, 10).await.unwrap().is_ok());
    assert!(l.budget_reserve(&[], usd(1.0), 0).await.unwrap().is_ok());
    l.shutdown().await;

    assert!(matches!(
        RedisLimiter::new("not a url", "p:", Duration::from_millis(100)),
        Err(RedisLimitError::Url(_))
    ));
}

#[tokio::test]
async fn a_silent_redis_times_out_instead_of_hanging() {
    // Accepts connections and never answers.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let sink = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((sock, _)) = listener.accept().await {
            open.push(sock);
        }
    });
    let l = RedisLimiter::new(
        &format!("redis://127.0.0.1:{port}"),
        "plexus-test:",
        Duration::from_millis(100),
    )
    .unwrap();
    let s = [Subject::new("key", "k", quota(Some(10), None, None))];
    for _ in 0..3 {
        let started = Instant::now();
        let err = l.acquire(&s, 0).await.unwrap_err();
        assert!(matches!(err, RedisLimitError::Unavailable(_)));
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
    }
    sink.abort();
}

/// A TCP proxy to Redis that the test can take down and bring back on the same port.
async fn proxy(listener: TcpListener) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut connections = JoinSet::new();
        while let Ok((mut inbound, _)) = listener.accept().await {
            connections.spawn(async move {
                let target = url();
                let addr = target.trim_start_matches("redis://").trim_end_matches('/');
                if let Ok(mut outbound) = TcpStream::connect(addr).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    })
}

fn listen_on(port: u16) -> TcpListener {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_reuseaddr(true).unwrap();
    socket
        .bind(format!("127.0.0.1:{port}").parse().unwrap())
        .unwrap();
    socket.listen(64).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovers_when_redis_comes_back() {
    let p = prefix();
    let first = listen_on(0);
    let port = first.local_addr().unwrap().port();
    let up = proxy(first).await;
    let l = RedisLimiter::new(
        &format!("redis://127.0.0.1:{port}"),
        &p,
        Duration::from_millis(500),
    )
    .unwrap();
    let s = [Subject::new("key", "k", quota(Some(1000), None, None))];
    l.acquire(&s, 0).await.unwrap().unwrap();

    // Redis goes away (listener and every proxied connection closed).
    up.abort();
    let _ = up.await;
    eventually("the outage is noticed", || async {
        let started = Instant::now();
        let r = l.acquire(&s, 0).await;
        assert!(started.elapsed() < Duration::from_secs(2));
        r.is_err()
    })
    .await;

    // It comes back on the same address: the limiter reconnects by itself.
    let back = proxy(listen_on(port)).await;
    eventually("the limiter reconnects", || async {
        matches!(l.acquire(&s, 0).await, Ok(Ok(_)))
    })
    .await;
    l.shutdown().await;
    back.abort();
    cleanup(&p).await;
}

#[tokio::test]
async fn state_is_one_arrival_time_per_limit_that_expires_by_itself() {
    let p = prefix();
    let l = limiter(&p);
    let s = [Subject::new(
        "key",
        "state",
        Quota {
            rpm: Some(60),
            tpd: Some(86_400),
            max_parallel: Some(4),
            ..Quota::default()
        },
    )];
    let (hold, _) = l.acquire(&s, 10).await.unwrap().unwrap();
    let client = redis::Client::open(url()).unwrap();
    let mut con = client.get_multiplexed_async_connection().await.unwrap();
    let (secs, micros): (u64, u64) = redis::cmd("TIME").query_async(&mut con).await.unwrap();
    let server_ns = u128::from(secs) * 1_000_000_000 + u128::from(micros) * 1000;

    // rpm 60: one request puts the arrival time 1 s ahead of the server clock.
    let rpm_key = format!("{p}rl:rpm:key:state");
    let tat: String = redis::cmd("GET")
        .arg(&rpm_key)
        .query_async(&mut con)
        .await
        .unwrap();
    let ahead = tat.parse::<u128>().unwrap().saturating_sub(server_ns);
    assert!(
        ahead > 500_000_000 && ahead <= 1_000_000_000,
        "arrival time {tat} vs server {server_ns}"
    );
    let ttl: i64 = redis::cmd("PTTL")
        .arg(&rpm_key)
        .query_async(&mut con)
        .await
        .unwrap();
    assert!(
        ttl > 0 && ttl <= 1000,
        "expires when the arrival time passes: {ttl}"
    );
    // tpd 86 400: ten tokens are ten seconds of the day.
    let ttl: i64 = redis::cmd("PTTL")
        .arg(format!("{p}rl:tpd:key:state"))
        .query_async(&mut con)
        .await
        .unwrap();
    assert!(ttl > 9_000 && ttl <= 10_000, "{ttl}");
    // One lease, expiring after the lease TTL.
    let par_key = format!("{p}rl:par:key:state");
    let leases: Vec<(String, f64)> = redis::cmd("ZRANGE")
        .arg(&par_key)
        .arg(0)
        .arg(-1)
        .arg("WITHSCORES")
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(leases.len(), 1);
    let expiry_ms = leases[0].1 as u128;
    let lease_ms = expiry_ms.saturating_sub(server_ns / 1_000_000);
    assert!(
        (14 * 60_000..=15 * 60_000).contains(&lease_ms),
        "{lease_ms}"
    );

    drop(hold);
    eventually("the rpm key expires and the lease is released", || async {
        let mut con = client.get_multiplexed_async_connection().await.unwrap();
        let exists: i64 = redis::cmd("EXISTS")
            .arg(&rpm_key)
            .arg(&par_key)
            .query_async(&mut con)
            .await
            .unwrap();
        exists == 0
    })
    .await;
    cleanup(&p).await;
}

//! `plexus spend`, the effective TEAM of `keys list`, `PLEXUS_URL` as the server root for every
//! command (chat included, `/v1` accepted), the connection options only on the commands that
//! talk to a server, and the SDK's admin client against a served gateway.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use plexus_sdk::admin::{AdminClient, Nanos, PatchUser, SpendGroup, SpendName, SpendQuery};
mod common;

use common::{plexus, run};

const MASTER: &str = "sk-test-master-0002";

/// `plexus serve --demo` with a master key on a fresh SQLite file; returns it and its URL.
fn start(dir: &std::path::Path) -> (common::Proc, String) {
    let (server, url, _) = common::serve(dir, MASTER, &["--demo"]);
    (server, url)
}

/// `plexus <args>` with `PLEXUS_URL=url` and `PLEXUS_API_KEY=key`; must succeed.
fn ok_as(url: &str, key: &str, args: &[&str]) -> String {
    let mut cmd = plexus();
    cmd.env("PLEXUS_URL", url)
        .env("PLEXUS_API_KEY", key)
        .args(args);
    let r = run(cmd);
    assert!(r.ok, "{args:?} with {url}: {}\n{}", r.stderr, r.stdout);
    r.stdout
}

fn ok(url: &str, args: &[&str]) -> String {
    ok_as(url, MASTER, args)
}

fn json(url: &str, args: &[&str]) -> serde_json::Value {
    let mut a = args.to_vec();
    a.push("--json");
    let out = ok(url, &a);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {out}"))
}

/// The cells of the table row whose first cell is `first`.
fn row<'a>(table: &'a str, first: &str) -> Vec<&'a str> {
    table
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|cells| cells.first() == Some(&first))
        .unwrap_or_else(|| panic!("no row {first} in\n{table}"))
}

/// The index of a column in a table's header (headers may have spaces: match on the start).
fn column(table: &str, name: &str) -> usize {
    let header = table.lines().next().unwrap();
    let at = header
        .find(name)
        .unwrap_or_else(|| panic!("no {name} in {header}"));
    header[..at].split_whitespace().count()
}

#[test]
fn connection_options_are_listed_only_where_a_server_is_called() {
    for args in [
        vec!["audit", "verify", "--help"],
        vec!["cache", "eval", "--help"],
        vec!["vault", "rotate-kek", "--help"],
        vec!["vault", "generate-key", "--help"],
        vec!["migrate", "--help"],
        vec!["serve", "--help"],
        vec!["mock", "--help"],
    ] {
        let mut cmd = plexus();
        cmd.args(&args);
        let r = run(cmd);
        assert!(r.ok, "{args:?}: {}", r.stderr);
        for option in ["--url", "--api-key", "PLEXUS_URL", "PLEXUS_API_KEY"] {
            assert!(
                !r.stdout.contains(option),
                "{args:?} lists {option}:\n{}",
                r.stdout
            );
        }
    }
    for args in [
        vec!["chat", "--help"],
        vec!["keys", "list", "--help"],
        vec!["keys", "--help"],
        vec!["teams", "create", "--help"],
        vec!["users", "get", "--help"],
        vec!["spend", "--help"],
        vec!["audit", "list", "--help"],
        vec!["audit", "export", "--help"],
        vec!["cache", "purge", "--help"],
    ] {
        let mut cmd = plexus();
        cmd.args(&args);
        let r = run(cmd);
        assert!(r.ok, "{args:?}: {}", r.stderr);
        for option in ["--url", "--api-key", "PLEXUS_URL", "server root"] {
            assert!(
                r.stdout.contains(option),
                "{args:?} lacks {option}:\n{}",
                r.stdout
            );
        }
    }
    let mut cmd = plexus();
    cmd.arg("--help");
    let r = run(cmd);
    assert!(
        r.stdout.contains("PLEXUS_URL") && r.stdout.contains("server root"),
        "{}",
        r.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spend_keys_teams_and_one_plexus_url() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, root) = start(dir.path());

    // A user's key belongs to the user's team; a key of a user moved into a team later shows
    // that team too.
    ok(&root, &["teams", "create", "eng"]);
    ok(&root, &["teams", "create", "ops"]);
    ok(&root, &["users", "create", "alice", "--team", "eng"]);
    ok(&root, &["users", "create", "bob"]);
    let alice = json(
        &root,
        &["keys", "create", "--name", "alice-key", "--user", "alice"],
    );
    assert_eq!(alice["team"], "eng", "{alice}");
    let alice_key = alice["key"].as_str().unwrap().to_owned();
    let bob = json(
        &root,
        &["keys", "create", "--name", "bob-key", "--user", "bob"],
    );
    assert!(bob["team"].is_null(), "{bob}");
    let admin = AdminClient::new(&format!("{root}/v1"), Some(MASTER)).unwrap();
    admin
        .update_user(
            "bob",
            &PatchUser {
                team: Some("ops".into()),
                ..PatchUser::default()
            },
        )
        .await
        .unwrap();
    let list = ok(&root, &["keys", "list"]);
    let team = column(&list, "TEAM");
    assert_eq!(
        row(&list, alice["id"].as_str().unwrap())[team],
        "eng",
        "{list}"
    );
    assert_eq!(
        row(&list, bob["id"].as_str().unwrap())[team],
        "ops",
        "{list}"
    );
    let details = ok(&root, &["keys", "get", bob["id"].as_str().unwrap()]);
    assert!(details.contains("ops (the user's)"), "{details}");

    // PLEXUS_URL is the server root for chat too; `/v1` and a trailing slash are accepted.
    for url in [root.clone(), format!("{root}/"), format!("{root}/v1")] {
        let out = ok_as(
            &url,
            &alice_key,
            &["chat", "--model", "demo-echo", "ping pong"],
        );
        assert!(out.contains("ping pong"), "{url}: {out}");
        let teams = ok(&url, &["teams", "list"]);
        assert!(teams.contains("eng"), "{url}: {teams}");
    }
    let mut cmd = plexus();
    cmd.args([
        "chat",
        "--model",
        "demo",
        "--url",
        &root,
        "--api-key",
        &alice_key,
        "hi",
    ]);
    assert!(run(cmd).ok);

    // Spend: a table with amounts to 6 decimals and a total, by every group.
    let report = admin
        .spend(&SpendQuery {
            group: Some(SpendGroup::Key),
            ..SpendQuery::default()
        })
        .await
        .unwrap();
    let alice_row = report
        .data
        .iter()
        .find(|r| r.name == Some(SpendName::Key(alice["id"].as_str().map(str::to_owned))))
        .unwrap_or_else(|| panic!("{report:?}"));
    assert_eq!(alice_row.requests, 4, "{report:?}");
    assert!(alice_row.cost_usd > Nanos::ZERO);
    let total: Nanos = report.data.iter().map(|r| r.cost_usd).sum();
    assert_eq!(report.total_usd, total);

    let table = ok(&root, &["spend"]);
    let header = table.lines().next().unwrap();
    for col in [
        "KEY",
        "REQUESTS",
        "PROMPT TOKENS",
        "COMPLETION TOKENS",
        "COST USD",
    ] {
        assert!(header.contains(col), "{header}");
    }
    let line = row(&table, alice["id"].as_str().unwrap());
    assert_eq!(line[1], "4", "{table}");
    let shown = line.last().unwrap();
    assert_eq!(shown.split('.').nth(1).map(str::len), Some(6), "{table}");
    let total_line = row(&table, "TOTAL");
    let micros = (total.0 + 500) / 1000;
    assert_eq!(
        total_line[total_line.len() - 1],
        format!("{}.{:06}", micros / 1_000_000, micros % 1_000_000),
        "{table}"
    );

    let by_model = ok(&root, &["spend", "--group", "model"]);
    assert!(by_model.starts_with("MODEL"), "{by_model}");
    assert!(
        by_model.contains("demo-echo") && by_model.contains("TOTAL"),
        "{by_model}"
    );
    let by_day = ok(&root, &["spend", "--group", "day", "--since", "1d"]);
    let today = by_day.lines().nth(1).unwrap();
    assert!(
        today.len() > 10 && today.as_bytes()[4] == b'-' && today.as_bytes()[7] == b'-',
        "a date: {by_day}"
    );
    let by_team = ok(&root, &["spend", "--group", "team", "--team", "eng"]);
    assert_eq!(row(&by_team, "eng")[1], "4", "{by_team}");
    let as_json = json(&root, &["spend", "--group", "user"]);
    assert_eq!(as_json["object"], "spend");
    assert_eq!(as_json["group"], "user");
    let none = ok(&root, &["spend", "--since", "2999-01-01"]);
    assert!(none.starts_with("no spend"), "{none}");

    // A member sees its own spend only, whatever it asks.
    let mine = ok_as(&root, &alice_key, &["spend", "--group", "user"]);
    assert_eq!(
        mine.lines()
            .filter(|l| !l.starts_with("USER") && !l.starts_with("TOTAL"))
            .count(),
        1,
        "{mine}"
    );
    assert!(row(&mine, "alice")[1] == "4", "{mine}");

    // Errors stay one line.
    let mut cmd = plexus();
    cmd.env("PLEXUS_URL", &root)
        .env("PLEXUS_API_KEY", MASTER)
        .args(["spend", "--since", "yesterday"]);
    let r = run(cmd);
    assert!(!r.ok && r.stderr.contains("--since"), "{}", r.stderr);
    let mut cmd = plexus();
    cmd.env("PLEXUS_URL", "127.0.0.1:4000").args(["spend"]);
    let r = run(cmd);
    assert!(!r.ok, "{}", r.stdout);
    assert_eq!(r.stderr.trim().lines().count(), 1, "{}", r.stderr);
    assert!(r.stderr.contains("PLEXUS_URL"), "{}", r.stderr);
}

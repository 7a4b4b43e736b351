//! The admin commands end to end: `plexus keys|teams|users|audit` against a served gateway,
//! and `plexus audit verify` on its database, intact and tampered with.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{plexus, run, Run};

const MASTER: &str = "sk-test-master-0001";

/// Starts `plexus serve` on a fresh SQLite file; returns it, its URL and the database URL.
fn start(dir: &std::path::Path) -> (common::Proc, String, String) {
    common::serve(dir, MASTER, &[])
}

/// `plexus <args>` against `url` with the master key (given through the environment).
fn admin(url: &str, args: &[&str]) -> Run {
    let mut cmd = plexus();
    cmd.env("PLEXUS_URL", url)
        .env("PLEXUS_API_KEY", MASTER)
        .args(args);
    run(cmd)
}

fn ok(url: &str, args: &[&str]) -> String {
    let r = admin(url, args);
    assert!(r.ok, "{args:?} failed: {}\n{}", r.stderr, r.stdout);
    r.stdout
}

fn json(url: &str, args: &[&str]) -> serde_json::Value {
    let mut a = args.to_vec();
    a.push("--json");
    let out = ok(url, &a);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {out}"))
}

/// The value of a `NAME  value` line of a details table.
fn field(out: &str, name: &str) -> String {
    out.lines()
        .find_map(|l| {
            l.strip_prefix(name)
                .filter(|rest| rest.starts_with("  "))
                .map(|rest| rest.trim().to_owned())
        })
        .unwrap_or_else(|| panic!("no {name} in {out}"))
}

/// The secret: the indented line after the title.
fn secret(out: &str) -> String {
    out.lines()
        .map(str::trim)
        .find(|l| l.starts_with("sk-"))
        .unwrap_or_else(|| panic!("no key in {out}"))
        .to_owned()
}

async fn models_status(url: &str, key: &str) -> u16 {
    reqwest::Client::new()
        .get(format!("{url}/v1/models"))
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_commands_manage_keys_and_verify_the_audit_chain() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, url, db) = start(dir.path());

    // Teams and users.
    let out = ok(&url, &["teams", "create", "eng", "--name", "Engineering"]);
    assert!(out.contains("Created team eng"), "{out}");
    let out = ok(&url, &["teams", "list"]);
    assert!(out.starts_with("ID "), "{out}");
    assert!(out.contains("eng") && out.contains("Engineering"), "{out}");
    assert_eq!(json(&url, &["teams", "get", "eng"])["name"], "Engineering");
    let out = ok(
        &url,
        &[
            "users", "create", "alice", "--team", "eng", "--role", "member",
        ],
    );
    assert!(out.contains("Created user alice"), "{out}");
    let out = ok(&url, &["users", "list", "--team", "eng"]);
    assert!(out.contains("alice"), "{out}");
    assert_eq!(json(&url, &["users", "get", "alice"])["team"], "eng");

    // Rate limits on teams and users.
    let out = ok(
        &url,
        &[
            "teams",
            "create",
            "ops",
            "--rpm",
            "600",
            "--max-parallel",
            "4",
        ],
    );
    assert_eq!(field(&out, "RPM"), "600");
    assert_eq!(field(&out, "MAX PARALLEL"), "4");
    assert_eq!(field(&out, "TPD"), "-");
    let ops = json(&url, &["teams", "get", "ops"]);
    assert_eq!(
        (ops["rpm"].as_i64(), ops["tpm"].as_i64()),
        (Some(600), None)
    );
    let out = ok(
        &url,
        &[
            "users", "create", "bert", "--team", "ops", "--tpm", "9000", "--tpd", "100000",
        ],
    );
    assert_eq!(field(&out, "TPM"), "9000");
    assert_eq!(field(&out, "TPD"), "100000");
    assert_eq!(json(&url, &["users", "get", "bert"])["tpd"], 100_000);
    let r = admin(&url, &["users", "create", "carl", "--tpd", "0"]);
    assert!(!r.ok && r.stderr.contains("tpd"), "{}", r.stderr);

    // A key, shown once, with its attributes.
    let out = ok(
        &url,
        &[
            "keys",
            "create",
            "--name",
            "ci",
            "--team",
            "eng",
            "--user",
            "alice",
            "--model",
            "gpt-4o*",
            "--model",
            "claude-*",
            "--expires-in",
            "30d",
            "--rpm",
            "60",
            "--tpd",
            "500000",
        ],
    );
    assert!(
        out.contains("Store this key now; it will not be shown again"),
        "{out}"
    );
    let id = field(&out, "ID");
    let key = secret(&out);
    assert_eq!(field(&out, "TEAM"), "eng");
    assert_eq!(field(&out, "MODELS"), "gpt-4o*,claude-*");
    assert_eq!(field(&out, "RPM"), "60");
    assert_eq!(field(&out, "TPD"), "500000");
    assert_eq!(field(&out, "STATUS"), "active");
    assert_eq!(models_status(&url, &key).await, 200);

    // The list table, through --url and --api-key rather than the environment.
    let mut cmd = plexus();
    cmd.args(["keys", "list", "--url", &url, "--api-key", MASTER]);
    let r = run(cmd);
    assert!(r.ok, "{}", r.stderr);
    let header = r.stdout.lines().next().unwrap();
    for col in [
        "ID", "NAME", "TEAM", "USER", "ROLE", "MODELS", "EXPIRES", "STATUS",
    ] {
        assert!(header.contains(col), "{header}");
    }
    let row = r.stdout.lines().find(|l| l.starts_with(&id)).unwrap();
    assert!(
        row.contains("alice") && row.contains("member") && row.ends_with("active"),
        "{row}"
    );
    assert_eq!(json(&url, &["keys", "get", &id])["rpm"], 60);

    // Revoked: gone from the default list, 401 on the API.
    let out = ok(&url, &["keys", "revoke", &id]);
    assert!(out.contains(&format!("Revoked key {id}")), "{out}");
    assert_eq!(models_status(&url, &key).await, 401);
    assert!(!ok(&url, &["keys", "list"]).contains(&id));
    let out = ok(&url, &["keys", "list", "--include-revoked"]);
    let row = out.lines().find(|l| l.starts_with(&id)).unwrap();
    assert!(row.ends_with("revoked"), "{row}");

    // Update and rotation with a grace period.
    let created = json(&url, &["keys", "create", "--name", "batch"]);
    let id2 = created["id"].as_str().unwrap().to_owned();
    let key2 = created["key"].as_str().unwrap().to_owned();
    let updated = json(
        &url,
        &["keys", "update", &id2, "--name", "batch-2", "--tpm", "1000"],
    );
    assert_eq!(updated["name"], "batch-2");
    assert_eq!(updated["tpm"], 1000);
    let updated = json(
        &url,
        &["keys", "update", &id2, "--clear", "tpm", "--tpd", "70"],
    );
    assert!(updated["tpm"].is_null(), "{updated}");
    assert_eq!(updated["tpd"], 70);
    let updated = json(&url, &["keys", "update", &id2, "--clear", "tpd"]);
    assert!(updated["tpd"].is_null(), "{updated}");
    let out = ok(&url, &["keys", "rotate", &id2, "--grace", "1h"]);
    assert!(
        out.contains("Store this key now; it will not be shown again"),
        "{out}"
    );
    let new_key = secret(&out);
    assert_ne!(new_key, key2);
    assert_eq!(field(&out, "ROTATED FROM"), id2);
    assert!(out.contains("keeps working until"), "{out}");
    assert_eq!(models_status(&url, &new_key).await, 200);
    assert_eq!(models_status(&url, &key2).await, 200, "within the grace");

    // Paging: one key per page, followed to the end.
    let all = json(
        &url,
        &["keys", "list", "--include-revoked", "--limit", "1", "--all"],
    );
    assert_eq!(all["data"].as_array().unwrap().len(), 3, "{all}");
    let page = json(&url, &["keys", "list", "--include-revoked", "--limit", "1"]);
    assert_eq!(page["has_more"], true, "{page}");

    // The audit log over HTTP.
    let out = ok(&url, &["audit", "list", "--action", "key.create"]);
    assert!(out.starts_with("SEQ "), "{out}");
    assert!(out.contains("key.create") && out.contains(&id), "{out}");
    assert!(!out.contains("key.revoke"), "{out}");
    let out = ok(&url, &["audit", "export"]);
    let entries: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(entries.len() >= 7, "{out}");
    for (i, e) in entries.iter().enumerate() {
        assert_eq!(e["seq"], i as i64 + 1, "{e}");
    }
    let actions: Vec<&str> = entries
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for a in [
        "team.create",
        "user.create",
        "key.create",
        "key.revoke",
        "key.update",
        "key.rotate",
    ] {
        assert!(actions.contains(&a), "{a} in {actions:?}");
    }
    let tail = ok(&url, &["audit", "export", "--after", "3"]);
    assert_eq!(tail.lines().count(), entries.len() - 3);

    // The chain, read from the database: intact...
    let mut cmd = plexus();
    cmd.args(["audit", "verify", "--database", &db]);
    let r = run(cmd);
    assert!(r.ok, "{}\n{}", r.stderr, r.stdout);
    assert!(r.stdout.starts_with("audit log intact: "), "{}", r.stdout);
    let head = entries.last().unwrap()["hash"].as_str().unwrap().to_owned();
    assert_eq!(
        r.stdout.trim(),
        format!("audit log intact: {} entries, head {head}", entries.len())
    );

    // ...then edited behind the gateway's back.
    let pool = sqlx::SqlitePool::connect(&db).await.unwrap();
    sqlx::query("UPDATE audit_log SET outcome = 'x' WHERE seq = 1")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let mut cmd = plexus();
    cmd.env("PLEXUS_DATABASE", &db).args(["audit", "verify"]);
    let r = run(cmd);
    assert_eq!(r.code, Some(1), "{}\n{}", r.stderr, r.stdout);
    assert!(r.stderr.contains("entry 1:"), "{}", r.stderr);
    assert!(r.stderr.contains("edited"), "{}", r.stderr);

    // Errors: the server's message and code, status 1, no panic.
    let wrong = reqwest::Client::new()
        .get(format!("{url}/admin/keys"))
        .bearer_auth("sk-wrong-key-0000")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let body: serde_json::Value = wrong.json().await.unwrap();
    let message = body["error"]["message"].as_str().unwrap().to_owned();
    let mut cmd = plexus();
    cmd.env("PLEXUS_URL", &url)
        .env("PLEXUS_API_KEY", "sk-wrong-key-0000")
        .args(["keys", "list"]);
    let r = run(cmd);
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert!(r.stderr.contains(&message), "{}", r.stderr);
    assert!(r.stderr.contains("invalid_api_key"), "{}", r.stderr);
    assert!(!r.stderr.contains("panicked") && !r.stderr.contains("backtrace"));

    let r = admin(&url, &["keys", "get", "key_does_not_exist"]);
    assert_eq!(r.code, Some(1));
    assert!(
        r.stderr.contains("not found") && r.stderr.contains("not_found"),
        "{}",
        r.stderr
    );
    let r = admin(&url, &["teams", "create", "bad id!"]);
    assert_eq!(r.code, Some(1));
    assert!(r.stderr.contains("param: id"), "{}", r.stderr);

    let r = admin("http://127.0.0.1:1", &["teams", "list"]);
    assert_eq!(r.code, Some(1));
    assert!(r.stderr.contains("http://127.0.0.1:1"), "{}", r.stderr);

    let mut cmd = plexus();
    cmd.args(["audit", "verify", "--database"]).arg(format!(
        "sqlite://{}",
        dir.path().join("missing.db").display()
    ));
    let r = run(cmd);
    assert_eq!(r.code, Some(1));
    assert!(r.stderr.contains("does not exist"), "{}", r.stderr);
    assert!(!dir.path().join("missing.db").exists());
}

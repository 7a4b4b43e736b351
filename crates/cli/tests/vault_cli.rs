//! The vault through the binary: start-up with a wrong or missing key-encryption key fails
//! clearly, `plexus vault rotate-kek` re-wraps everything, and no secret reaches the logs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use plexus_mock::{MockConfig, MockServer};
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};

const MASTER: &str = "sk-vault-test-master-0001";
const SECRET: &str = "sk-provider-secret-in-the-vault-42";

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn plexus() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_plexus"));
    cmd.env_remove("PLEXUS_ENCRYPTION_KEY")
        .env("PLEXUS_LOG", "debug");
    cmd
}

fn generate_key() -> String {
    let out = plexus().args(["vault", "generate-key"]).output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// Starts serve; returns the process and URL, or the failure's stderr.
fn serve(
    cfg: &std::path::Path,
    kek: Option<&str>,
    log: &std::path::Path,
) -> Result<(Proc, String), String> {
    let mut cmd = plexus();
    cmd.args(["serve", "--config"]).arg(cfg);
    if let Some(k) = kek {
        cmd.env("PLEXUS_ENCRYPTION_KEY", k);
    }
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    match line.trim().strip_prefix("plexus listening on ") {
        Some(url) => Ok((Proc(child), url.to_owned())),
        None => {
            let _ = child.wait();
            let mut err = String::new();
            std::fs::File::open(log)
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            Err(err)
        }
    }
}

async fn chat(url: &str, key: &str) -> u16 {
    reqwest::Client::new()
        .post(format!("{url}/v1/chat/completions"))
        .bearer_auth(key)
        .json(&serde_json::json!({"model": "gpt", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vault_keys_rotation_and_clean_logs() {
    let mock = MockServer::start(MockConfig::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("p.db");
    let cfg = dir.path().join("p.yaml");
    std::fs::write(
        &cfg,
        format!(
            "listen: 127.0.0.1:0\ndatabase: sqlite://{}\nmaster_key: {MASTER}\nproviders: [{{name: oai, kind: openai, base_url: '{}/v1'}}]\nmodels: [{{name: gpt, targets: [{{provider: oai, model: gpt-4o-mini}}]}}]\n",
            db.display(),
            mock.url()
        ),
    )
    .unwrap();
    let kek = generate_key();
    let log = dir.path().join("serve.log");
    let (proc_, url) = serve(&cfg, Some(&kek), &log).unwrap();
    let http = reqwest::Client::new();

    let created: serde_json::Value = http
        .post(format!("{url}/admin/keys"))
        .bearer_auth(MASTER)
        .json(&serde_json::json!({"name": "k"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = created["key"].as_str().unwrap().to_owned();
    let r = http
        .post(format!("{url}/admin/credentials"))
        .bearer_auth(MASTER)
        .json(&serde_json::json!({"provider": "oai", "secret": SECRET}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(chat(&url, &key).await, 200);
    assert_eq!(
        chat(
            &url,
            "sk-px-AAAAAAAAAAAA-0000000000000000000000000000000000000000"
        )
        .await,
        401
    );
    let upstream = mock.requests().into_iter().last().unwrap();
    assert_eq!(
        upstream.headers["authorization"],
        format!("Bearer {SECRET}")
    );
    drop(proc_);

    // Debug logs of the whole session hold no secret.
    let logs = std::fs::read_to_string(&log).unwrap();
    assert!(!logs.is_empty());
    for secret in [MASTER, key.as_str(), SECRET, kek.as_str()] {
        assert!(
            !logs.contains(secret),
            "a secret in the logs: {secret:.12}…"
        );
    }

    // A wrong or missing key-encryption key stops the start-up with a clear message.
    let other = generate_key();
    let err = serve(&cfg, Some(&other), &dir.path().join("wrong.log"))
        .err()
        .expect("must not start");
    assert!(
        err.contains("KEK") || err.contains("key-encryption"),
        "{err}"
    );
    let err = serve(&cfg, None, &dir.path().join("none.log"))
        .err()
        .expect("must not start");
    assert!(err.contains("PLEXUS_ENCRYPTION_KEY"), "{err}");

    // Rotation to the other key; running it twice is harmless; the new key then works.
    let new_file = dir.path().join("new.kek");
    std::fs::write(&new_file, &other).unwrap();
    for expected in ["re-wrapped 1", "re-wrapped 0"] {
        let out = plexus()
            .env("PLEXUS_ENCRYPTION_KEY", &kek)
            .args(["vault", "rotate-kek", "--new-key-file"])
            .arg(&new_file)
            .args(["--database", &format!("sqlite://{}", db.display())])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains(expected));
    }
    let (_proc, url) = serve(&cfg, Some(&other), &dir.path().join("after.log")).unwrap();
    assert_eq!(chat(&url, &key).await, 200);
    let upstream = mock.requests().into_iter().last().unwrap();
    assert_eq!(
        upstream.headers["authorization"],
        format!("Bearer {SECRET}")
    );
}

//! The binary's other entry points: `serve --demo`, TLS, `plexus chat`, `errors`, and refusing
//! a non-loopback listener without a master key.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn plexus() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_plexus"));
    cmd.env("PLEXUS_LOG", "warn")
        .env_remove("OPENAI_API_KEY")
        .env_remove("ANTHROPIC_API_KEY")
        .env_remove("GEMINI_API_KEY")
        .env_remove("PLEXUS_MASTER_KEY");
    cmd
}

fn start(mut cmd: Command) -> (Proc, String) {
    let mut child = cmd.stdout(Stdio::piped()).spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let url = line
        .trim()
        .strip_prefix("plexus listening on ")
        .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
        .to_owned();
    (Proc(child), url)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_mode_answers_without_keys_and_plexus_chat_streams() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = plexus();
    cmd.current_dir(dir.path())
        .args(["serve", "--demo", "--listen", "127.0.0.1:0"]);
    let (_proc, url) = start(cmd);
    let http = reqwest::Client::new();
    for model in ["demo", "demo-claude", "demo-gemini"] {
        let r = http
            .post(format!("{url}/v1/chat/completions"))
            .json(&serde_json::json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{model}");
    }
    assert!(
        dir.path().join("plexus.db").exists(),
        "SQLite in the working directory"
    );

    let url2 = url.clone();
    let out = tokio::task::spawn_blocking(move || {
        plexus()
            .args([
                "chat",
                "--model",
                "demo-echo",
                "--url",
                &format!("{url2}/v1"),
                "ping pong",
            ])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("ping pong"));
    assert!(String::from_utf8_lossy(&out.stderr).contains("completion tokens"));
}

/// A self-signed certificate for localhost and 127.0.0.1, made with the openssl command.
fn self_signed(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    let ok = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
        ])
        .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(ok.success());
    (cert, key)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_tls_when_given_a_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(dir.path());
    let cfg = dir.path().join("p.yaml");
    std::fs::write(
        &cfg,
        format!(
            "listen: 127.0.0.1:0\ndatabase: sqlite://{}\ntls: {{cert: '{}', key: '{}'}}\n",
            dir.path().join("p.db").display(),
            cert.display(),
            key.display()
        ),
    )
    .unwrap();
    let mut cmd = plexus();
    cmd.args(["serve", "--config"]).arg(&cfg);
    let (_proc, url) = start(cmd);
    assert!(url.starts_with("https://"), "{url}");
    let ca = reqwest::Certificate::from_pem(&std::fs::read(&cert).unwrap()).unwrap();
    let http = reqwest::Client::builder()
        .add_root_certificate(ca)
        .build()
        .unwrap();
    let r = http.get(format!("{url}/health")).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

#[test]
fn refuses_a_public_listener_without_a_master_key() {
    let dir = tempfile::tempdir().unwrap();
    let out = plexus()
        .current_dir(dir.path())
        .args(["serve", "--listen", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("master_key"));
}

#[test]
fn errors_prints_the_published_table() {
    let out = plexus().arg("errors").output().unwrap();
    assert!(out.status.success());
    let table = String::from_utf8(out.stdout).unwrap();
    assert!(table.contains("| `invalid_api_key` | 401 |"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_calls_honour_the_proxy_environment() {
    // The simulator routes by path, so it can stand in for a forward proxy: the gateway only
    // reaches the (unresolvable) upstream host through it if it honours HTTP_PROXY.
    let mock = plexus_mock::MockServer::start(plexus_mock::MockConfig::default())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("p.yaml");
    std::fs::write(
        &cfg,
        format!(
            "listen: 127.0.0.1:0\ndatabase: sqlite://{}\nproviders: [{{name: far, kind: openai, base_url: 'http://upstream.invalid:9/v1', api_key: k}}]\n",
            dir.path().join("p.db").display()
        ),
    )
    .unwrap();
    let mut cmd = plexus();
    cmd.args(["serve", "--config"])
        .arg(&cfg)
        .env("HTTP_PROXY", mock.url())
        .env("http_proxy", mock.url())
        .env_remove("NO_PROXY")
        .env_remove("no_proxy");
    let (_proc, url) = start(cmd);
    let r = reqwest::Client::new()
        .post(format!("{url}/v1/chat/completions"))
        .json(&serde_json::json!({"model": "far/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    assert!(mock.request_count() >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_tls_trusts_the_configured_ca_bundle() {
    // Upstream: a TLS-serving Plexus in demo mode. Downstream: a Plexus whose provider points
    // at it over https, trusting its self-signed certificate only through `ca_bundle`.
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(dir.path());
    let upstream_cfg = dir.path().join("up.yaml");
    std::fs::write(
        &upstream_cfg,
        format!(
            "listen: 127.0.0.1:0\ndatabase: sqlite://{}\ntls: {{cert: '{}', key: '{}'}}\n",
            dir.path().join("up.db").display(),
            cert.display(),
            key.display()
        ),
    )
    .unwrap();
    let mut cmd = plexus();
    cmd.args(["serve", "--demo", "--config"]).arg(&upstream_cfg);
    let (_up, up_url) = start(cmd);
    let port = up_url.rsplit(':').next().unwrap().to_owned();

    let downstream = |with_ca: bool, name: &str| {
        let cfg = dir.path().join(format!("{name}.yaml"));
        let ca = if with_ca {
            format!("ca_bundle: '{}'\n", cert.display())
        } else {
            String::new()
        };
        std::fs::write(
            &cfg,
            format!(
                "listen: 127.0.0.1:0\ndatabase: sqlite://{}\n{ca}providers: [{{name: up, kind: openai, base_url: 'https://localhost:{port}/v1'}}]\n",
                dir.path().join(format!("{name}.db")).display()
            ),
        )
        .unwrap();
        let mut cmd = plexus();
        cmd.args(["serve", "--config"]).arg(&cfg);
        start(cmd)
    };
    let body =
        serde_json::json!({"model": "up/demo", "messages": [{"role": "user", "content": "hi"}]});
    let http = reqwest::Client::new();

    let (_trusting, url) = downstream(true, "trusting");
    let r = http
        .post(format!("{url}/v1/chat/completions"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());

    let (_untrusting, url) = downstream(false, "untrusting");
    let r = http
        .post(format!("{url}/v1/chat/completions"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 502, "an unknown CA must not be trusted");
}

/// Runs `plexus` to its end with a backtrace requested; returns (exit code, stderr).
fn run_to_end(mut cmd: Command) -> (Option<i32>, String) {
    let out = cmd
        .env("RUST_BACKTRACE", "1")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A one-connection HTTP server answering every request with a multi-line HTML 404, as a
/// reverse proxy in front of nothing would.
fn html_404_server() -> String {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut buf = [0u8; 8192];
            let _ = stream.read(&mut buf);
            let body = "<html>\n<head><title>404 Not Found</title></head>\n<body>\n<h1>Not Found</h1>\n</body>\n</html>\n";
            let _ = write!(
                stream,
                "HTTP/1.1 404 Not Found\r\ncontent-type: text/html\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    format!("http://{addr}")
}

#[test]
fn chat_failures_are_one_line_without_a_backtrace() {
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let html = html_404_server();
    for url in [format!("http://{closed}/v1"), format!("{html}/v1")] {
        let mut cmd = plexus();
        cmd.args(["chat", "--model", "demo", "--url", &url, "hi"]);
        let (code, stderr) = run_to_end(cmd);
        assert_eq!(code, Some(1), "{url}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{url}: one line:\n{stderr}");
        assert!(stderr.starts_with("error: "), "{url}: {stderr}");
        assert!(!stderr.contains("Caused by") && !stderr.contains("backtrace"));
    }
    let mut cmd = plexus();
    cmd.args([
        "chat",
        "--model",
        "demo",
        "--url",
        &format!("http://{closed}/v1"),
        "hi",
    ]);
    let (_, stderr) = run_to_end(cmd);
    assert!(
        stderr.contains(&closed.to_string()),
        "names what it could not reach: {stderr}"
    );
    let mut cmd = plexus();
    cmd.args([
        "chat",
        "--model",
        "demo",
        "--url",
        &format!("{html}/v1"),
        "hi",
    ]);
    let (_, stderr) = run_to_end(cmd);
    assert!(
        stderr.contains("404") && stderr.contains("Not Found"),
        "{stderr}"
    );
}

#[test]
fn a_busy_port_names_the_address_and_suggests_listen_without_colours() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = plexus();
    cmd.current_dir(dir.path())
        .env("PLEXUS_LOG", "info")
        .env_remove("NO_COLOR")
        .args(["serve", "--demo", "--listen", &addr]);
    let (code, stderr) = run_to_end(cmd);
    assert_eq!(code, Some(1), "{stderr}");
    let last = stderr.lines().last().unwrap_or_default();
    assert!(last.starts_with("error: "), "{stderr}");
    assert!(
        last.contains(&addr) && last.contains("in use") && last.contains("--listen"),
        "{stderr}"
    );
    // Logs were written (at info), and stderr is not a terminal here: no escape codes.
    assert!(stderr.contains("Demo simulator running"), "{stderr}");
    assert!(
        !stderr.contains('\x1b'),
        "ANSI codes in piped output: {stderr:?}"
    );
    drop(taken);
}

#[test]
fn an_invalid_log_filter_is_reported_not_ignored() {
    let mut cmd = plexus();
    cmd.env("PLEXUS_LOG", "info,[[").arg("errors");
    let (code, stderr) = run_to_end(cmd);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("PLEXUS_LOG"), "{stderr}");
}

//! What the CLI tests share: the binary with a clean environment, a served gateway on a fresh
//! SQLite file, and a finished command's output.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};

/// A child process killed when dropped.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `plexus`, without the environment variables that would change what a test sees.
pub fn plexus() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_plexus"));
    cmd.env("PLEXUS_LOG", "warn")
        .env_remove("PLEXUS_URL")
        .env_remove("PLEXUS_API_KEY")
        .env_remove("PLEXUS_DATABASE")
        .env_remove("PLEXUS_MASTER_KEY")
        .env_remove("OPENAI_API_KEY")
        .env_remove("ANTHROPIC_API_KEY")
        .env_remove("GEMINI_API_KEY")
        .env_remove("RUST_BACKTRACE")
        .stdin(Stdio::null());
    cmd
}

/// `plexus serve [extra...] --config` with a master key on a fresh SQLite file in `dir`;
/// returns the process, its URL and the database URL.
pub fn serve(dir: &std::path::Path, master_key: &str, extra: &[&str]) -> (Proc, String, String) {
    let db = format!("sqlite://{}", dir.join("plexus.db").display());
    let cfg = dir.join("plexus.yaml");
    std::fs::write(
        &cfg,
        format!("listen: 127.0.0.1:0\ndatabase: {db}\nmaster_key: {master_key}\n"),
    )
    .unwrap();
    let mut child = plexus()
        .arg("serve")
        .args(extra)
        .arg("--config")
        .arg(&cfg)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let url = line
        .trim()
        .strip_prefix("plexus listening on ")
        .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
        .to_owned();
    (Proc(child), url, db)
}

/// A finished command.
pub struct Run {
    pub ok: bool,
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `cmd` to its end; a panic is never an acceptable outcome.
pub fn run(mut cmd: Command) -> Run {
    let Output {
        status,
        stdout,
        stderr,
    } = cmd.output().unwrap();
    let r = Run {
        ok: status.success(),
        code: status.code(),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    };
    assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
    r
}

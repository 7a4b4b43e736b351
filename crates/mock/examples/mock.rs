//! Stand-in for `plexus mock` until the CLI wires it: `mock --listen ADDR [--config FILE]`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use plexus_mock::MockConfig;

fn parse_args() -> Result<(SocketAddr, Option<PathBuf>), String> {
    let mut args = std::env::args().skip(1);
    if args.next().as_deref() != Some("mock") {
        return Err("usage: mock --listen ADDR [--config FILE]".into());
    }
    let mut listen = None;
    let mut config = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--listen" => {
                let v = args.next().ok_or("--listen needs a value")?;
                listen = Some(v.parse().map_err(|e| format!("--listen {v}: {e}"))?);
            }
            "--config" => {
                config = Some(PathBuf::from(args.next().ok_or("--config needs a value")?))
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    let listen = listen.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
    Ok((listen, config))
}

#[tokio::main]
async fn main() -> ExitCode {
    let (listen, config_path) = match parse_args() {
        Ok(v) => v,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let config = match config_path {
        Some(path) => match MockConfig::from_file(&path) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::from(2);
            }
        },
        None => MockConfig::default(),
    };
    match plexus_mock::run(listen, config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("plexus mock: {e}");
            ExitCode::FAILURE
        }
    }
}

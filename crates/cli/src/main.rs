//! The `plexus` binary: parses arguments, wires the libraries together, handles signals.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use futures::StreamExt;
use plexus_core::config::{
    self, Config, ModelConfig, Overrides, ProviderConfig, ProviderKind, TargetConfig,
};
use plexus_server::{AppState, Listener, Runtime, ServeOptions};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

mod admin;
mod eval;
mod orchestrate_eval;
mod orchestrations;
mod route;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "plexus",
    version,
    about = "One OpenAI-compatible API over many LLM providers.",
    after_help = "Commands that talk to a server take --url (PLEXUS_URL), the server root such as \
                  http://127.0.0.1:4000 (`chat` adds /v1; a URL ending in /v1 is accepted), and \
                  --api-key (PLEXUS_API_KEY)."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Serve(ServeArgs),
    /// Run the provider simulator (OpenAI, Anthropic and Gemini wire formats).
    Mock {
        /// Address to listen on (port 0 picks a free one).
        #[arg(long, default_value = "127.0.0.1:4010")]
        listen: SocketAddr,
        /// YAML or JSON file with model profiles (latency, faults).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Send one chat request to `<url>/v1` and stream the answer to the terminal.
    Chat {
        #[command(flatten)]
        conn: admin::Conn,
        /// The model to ask: a configured model name or `provider/upstream_model`.
        #[arg(long, short)]
        model: String,
        /// A system prompt sent before the question.
        #[arg(long)]
        system: Option<String>,
        /// Most tokens in the answer.
        #[arg(long)]
        max_tokens: Option<u32>,
        /// The question (the user message).
        prompt: String,
    },
    /// Apply database migrations and exit.
    Migrate {
        /// Database URL (`sqlite://...` or `postgres://...`).
        #[arg(long, env = "PLEXUS_DATABASE", default_value = config::DEFAULT_DATABASE)]
        database: String,
    },
    /// Print the error code table (docs/errors.md).
    Errors,
    /// The credential vault: generate a key-encryption key, or re-wrap every credential under a
    /// new one.
    #[command(subcommand)]
    Vault(VaultCmd),
    /// Manage virtual keys through the admin API.
    Keys(admin::KeysCmd),
    /// Manage teams through the admin API.
    Teams(admin::TeamsCmd),
    /// Manage users through the admin API.
    Users(admin::UsersCmd),
    /// Spend from the request log, grouped by key, user, team, model or day, with a total.
    Spend(admin::SpendCmd),
    /// Read, export and verify the audit log.
    Audit(admin::AuditCmd),
    /// The response cache: purge it through the admin API, or evaluate the semantic cache.
    Cache(admin::CacheCmd),
    /// The learned quality predictor of `model: auto`: train it from RouteLLM-format data, or
    /// evaluate it against the baselines (APGR, CPT). Offline.
    Route(route::RouteCmd),
    /// Orchestrations (`POST /v1/orchestrations`, orchestration models): show one with its
    /// contributors and evidence graph.
    Orchestrations(orchestrations::OrchestrationsCmd),
    /// The cross-model orchestrator: evaluate its strategies on simulator models with known
    /// accuracy (vote against its closed form, correlation, cascade frontier, calibration).
    Orchestrate(orchestrate_eval::OrchestrateCmd),
}

#[derive(Subcommand)]
enum VaultCmd {
    /// Print a new random key-encryption key (base64 of 32 bytes) for PLEXUS_ENCRYPTION_KEY.
    GenerateKey,
    /// Re-wrap every stored credential's data key under a new key-encryption key. The current
    /// key comes from PLEXUS_ENCRYPTION_KEY (or --old-key-file). Safe to interrupt and rerun.
    RotateKek {
        /// File holding the new key-encryption key (base64 of 32 bytes, as `generate-key`
        /// prints).
        #[arg(long)]
        new_key_file: PathBuf,
        /// File holding the current key, instead of PLEXUS_ENCRYPTION_KEY.
        #[arg(long)]
        old_key_file: Option<PathBuf>,
        /// Database URL (`sqlite://...` or `postgres://...`).
        #[arg(long, env = "PLEXUS_DATABASE", default_value = config::DEFAULT_DATABASE)]
        database: String,
    },
}

#[derive(clap::Args, Clone)]
struct ServeArgs {
    /// YAML config file.
    #[arg(long, env = "PLEXUS_CONFIG")]
    config: Option<PathBuf>,
    /// Address to listen on (overrides the file).
    #[arg(long, env = "PLEXUS_LISTEN")]
    listen: Option<SocketAddr>,
    /// Database URL (overrides the file).
    #[arg(long, env = "PLEXUS_DATABASE")]
    database: Option<String>,
    /// Add the built-in provider simulator and demo models: answers with no provider key.
    #[arg(long)]
    demo: bool,
    /// Log one line per request (method, path, status, duration, ids, model, bytes) at INFO on
    /// the `plexus::access` target, as `log: {access: true}` in the config does.
    #[arg(long)]
    access_log: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line, no backtrace: the chain of causes joined once (`outer: inner`).
            use std::io::Write;
            let _ = std::io::stdout().flush();
            eprintln!("error: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}

/// Logs go to stderr, filtered by `PLEXUS_LOG` (`EnvFilter` syntax, e.g. `warn` or
/// `info,plexus_server=debug`; default `info`), coloured only on a terminal (and not under
/// `NO_COLOR`).
fn init_logging() {
    use std::io::IsTerminal;
    let filter = match std::env::var("PLEXUS_LOG") {
        Ok(spec) if !spec.trim().is_empty() => tracing_subscriber::EnvFilter::try_new(&spec)
            .unwrap_or_else(|e| {
                eprintln!("warning: PLEXUS_LOG={spec:?} is not a valid filter ({e}); using `info`");
                tracing_subscriber::EnvFilter::new("info")
            }),
        _ => tracing_subscriber::EnvFilter::new("info"),
    };
    let ansi = std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .init();
}

fn run(cli: Cli) -> Result<()> {
    // One crypto provider for every rustls user in the process.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        match cli.command {
            Command::Serve(args) => serve(args).await,
            Command::Mock { listen, config } => mock(listen, config).await,
            Command::Chat {
                conn,
                model,
                system,
                max_tokens,
                prompt,
            } => chat(conn, model, system, max_tokens, prompt).await,
            Command::Migrate { database } => {
                let store = plexus_store::Store::connect(&database).await?;
                store.close().await;
                println!("migrations applied to {database}");
                Ok(())
            }
            Command::Errors => {
                print!("{}", plexus_core::error::error_table_markdown());
                Ok(())
            }
            Command::Vault(cmd) => vault(cmd).await,
            Command::Keys(cmd) => admin::keys(cmd).await,
            Command::Teams(cmd) => admin::teams(cmd).await,
            Command::Users(cmd) => admin::users(cmd).await,
            Command::Spend(cmd) => admin::spend(cmd).await,
            Command::Audit(cmd) => admin::audit(cmd).await,
            Command::Cache(cmd) => admin::cache(cmd).await,
            Command::Route(cmd) => route::run(cmd).await,
            Command::Orchestrations(cmd) => orchestrations::run(cmd).await,
            Command::Orchestrate(cmd) => orchestrate_eval::run(cmd).await,
        }
    })
}

/// An error and its causes on one line: each cause once (a wrapper that repeats its source's
/// text adds nothing), whitespace runs (a multi-line body) collapsed, and at most 500 characters.
fn one_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
        if text.is_empty() || line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    const MAX: usize = 500;
    if line.chars().count() > MAX {
        line = line.chars().take(MAX - 1).collect::<String>() + "…";
    }
    line
}

/// Binds a listener; a taken or forbidden address says which, and how to choose another.
async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener> {
    use std::io::ErrorKind;
    tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        let host = match addr {
            SocketAddr::V4(a) => a.ip().to_string(),
            SocketAddr::V6(a) => format!("[{}]", a.ip()),
        };
        let (why, hint) = match e.kind() {
            ErrorKind::AddrInUse => ("address in use", format!("{host}:PORT")),
            ErrorKind::PermissionDenied => ("permission denied", format!("{host}:PORT")),
            ErrorKind::AddrNotAvailable => {
                ("not an address of this machine", "ADDRESS:PORT".into())
            }
            _ => return anyhow::Error::new(e).context(format!("cannot listen on {addr}")),
        };
        anyhow::anyhow!("cannot listen on {addr}: {why}; pass --listen {hint}")
    })
}

fn overrides(args: &ServeArgs) -> Overrides {
    Overrides {
        listen: args.listen,
        database: args.database.clone(),
        master_key: None,
    }
}

fn load_config(args: &ServeArgs, demo_url: Option<&str>) -> Result<Config> {
    let overrides = overrides(args);
    let mut cfg = match &args.config {
        Some(path) => config::load_file(path, &overrides)?,
        None => config::embedded_default(&overrides, &|name| std::env::var(name).ok())?,
    };
    if let Some(url) = demo_url {
        add_demo(&mut cfg, url);
    }
    // The flag wins over the file, on every reload too.
    cfg.log.access |= args.access_log;
    Ok(cfg)
}

/// Demo providers (one per wire format, all served by the in-process simulator) and models.
fn add_demo(cfg: &mut Config, mock_url: &str) {
    let providers = [
        (
            "demo-openai",
            ProviderKind::OpenAi,
            format!("{mock_url}/v1"),
        ),
        (
            "demo-anthropic",
            ProviderKind::Anthropic,
            mock_url.to_owned(),
        ),
        ("demo-gemini", ProviderKind::Gemini, mock_url.to_owned()),
    ];
    for (name, kind, base_url) in providers {
        if cfg.provider(name).is_some() {
            continue;
        }
        cfg.providers.push(ProviderConfig {
            name: name.into(),
            kind,
            base_url,
            api_key: Some("demo-key".to_owned().into()),
            api_version: None,
            headers: Vec::new(),
            preset: None,
            supports_n: true,
            stream_usage: true,
            responses: kind == ProviderKind::OpenAi,
        });
    }
    let models = [
        ("demo", "demo-openai", "gpt-4o-mini"),
        ("demo-claude", "demo-anthropic", "claude-sonnet-4-5"),
        ("demo-gemini", "demo-gemini", "gemini-2.5-flash"),
        ("demo-echo", "demo-openai", "echo"),
        ("demo-tools", "demo-openai", "tool-parallel"),
        ("demo-embed", "demo-openai", "text-embedding-3-small"),
    ];
    for (name, provider, upstream) in models {
        if cfg.model(name).is_some() {
            continue;
        }
        if let Some((idx, _)) = cfg.provider(provider) {
            cfg.models.push(ModelConfig::new(
                name,
                vec![TargetConfig::new(idx, upstream)],
            ));
        }
    }
    // `model: demo-auto`: the selector over the three chat models (catalog prices).
    let candidates = ["demo", "demo-claude", "demo-gemini"];
    if cfg.model("demo-auto").is_none() && candidates.iter().all(|m| cfg.model(m).is_some()) {
        let mut auto = ModelConfig::new("demo-auto", Vec::new());
        auto.select = Some(plexus_core::config::SelectConfig {
            candidates: candidates.iter().map(|c| (*c).to_owned()).collect(),
            objective: plexus_select::choose::Objective::Balanced,
            cost_weight: 0.5,
            router: None,
            max_cost_per_request: None,
            max_latency: None,
            explore: 0.02,
            affinity: true,
            embedder: None,
        });
        cfg.models.push(auto);
    }
    // `model: demo-council`: a vote of three simulator models (one per wire format) that
    // answer arithmetic right with probability 0.9, 0.8 and 0.7.
    let quiz = [
        ("demo-quiz-a", "demo-openai", "quiz-a+acc-0.9", 0.9),
        ("demo-quiz-b", "demo-anthropic", "quiz-b+acc-0.8", 0.8),
        ("demo-quiz-c", "demo-gemini", "quiz-c+acc-0.7", 0.7),
    ];
    if cfg.model("demo-council").is_none() && quiz.iter().all(|(m, ..)| cfg.model(m).is_none()) {
        let mut members = Vec::new();
        for (name, provider, upstream, quality) in quiz {
            if let Some((idx, _)) = cfg.provider(provider) {
                let mut m = ModelConfig::new(name, vec![TargetConfig::new(idx, upstream)]);
                m.quality = Some(quality);
                cfg.models.push(m);
                members.push(name.to_owned());
            }
        }
        let fields = plexus_protocol::orchestration::OrchestrateFields {
            strategy: Some("vote".into()),
            members: Some(members),
            answer: Some("number".into()),
            ..Default::default()
        };
        if let Ok(spec) = plexus_core::orchestrate::OrchestrateConfig::parse(fields) {
            let mut council = ModelConfig::new("demo-council", Vec::new());
            council.orchestrate = Some(spec);
            cfg.models.push(council);
        }
    }
}

async fn serve(args: ServeArgs) -> Result<()> {
    let shutdown = shutdown_signal();
    let mock = if args.demo {
        let server = plexus_mock::MockServer::start(plexus_mock::MockConfig::default())
            .await
            .context("cannot start the demo simulator")?;
        tracing::info!(message = "Demo simulator running.", url = %server.url());
        Some(server)
    } else {
        None
    };
    let demo_url = mock.as_ref().map(|m| m.url());
    let cfg = load_config(&args, demo_url.as_deref())?;
    announce_models(&cfg, args.demo);

    let store = plexus_store::Store::connect(&cfg.database)
        .await
        .with_context(|| format!("cannot open database {}", cfg.database))?;
    let (writer, writer_handle) = plexus_store::LogWriter::spawn(store.clone(), 8192);
    let (audit, audit_handle) = plexus_auth::audit::AuditWriter::spawn(store.clone());
    let client =
        plexus_providers::client::UpstreamClient::new(&plexus_providers::client::ClientOptions {
            timeouts: cfg.timeouts,
            ca_bundle: cfg.ca_bundle.clone(),
        })?;
    let listen = cfg.listen;
    let opts = ServeOptions {
        tls: cfg.tls.clone(),
        grace: cfg.shutdown_grace,
        inbound: cfg.inbound,
    };
    // The vault's key: the environment wins over the file; wrong or missing while credentials
    // are stored is a start-up error (from `Runtime::load`), never garbage.
    let vault = match plexus_auth::vault::Kek::load(cfg.vault_key_file.as_deref()) {
        Ok(kek) => Some(std::sync::Arc::new(kek)),
        Err(plexus_auth::vault::VaultError::MissingKey) => None,
        Err(e) => anyhow::bail!("invalid key-encryption key: {e}"),
    };
    let runtime = Runtime::load(cfg, &client, &store, vault.as_deref())
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let clock = std::sync::Arc::new(plexus_core::clock::SystemClock);
    let state = AppState::new(runtime, client, store.clone(), writer, audit, vault, clock)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let background = state.clone();

    let listener = bind(listen).await?;
    let local = listener.local_addr()?;
    let scheme = if opts.tls.is_some() { "https" } else { "http" };
    println!("plexus listening on {scheme}://{local}");
    tracing::info!(message = "Listening.", address = %local);

    let reload = tokio::spawn(reload_on_sighup(
        state.clone(),
        args.clone(),
        demo_url.clone(),
    ));
    let retention_stop = tokio_util::sync::CancellationToken::new();
    let retention = tokio::spawn(plexus_server::run_housekeeping(
        state.clone(),
        std::time::Duration::from_secs(3600),
        retention_stop.clone(),
    ));
    // When the signal came: background runs get what is left of the grace period after the
    // connections have drained.
    let grace = opts.grace;
    let signalled = std::sync::Arc::new(std::sync::OnceLock::new());
    let mark = signalled.clone();
    let shutdown = async move {
        shutdown.await;
        let _ = mark.set(tokio::time::Instant::now());
    };
    let result = plexus_server::serve(state, Listener::Tcp(listener), opts, shutdown).await;
    let left = signalled
        .get()
        .map(|at| grace.saturating_sub(at.elapsed()))
        .unwrap_or_default();
    background.drain_background_runs(left).await;
    reload.abort();
    retention_stop.cancel();
    let _ = retention.await;
    // What the grace period did not drain is cancelled now, and records itself as cancelled,
    // before the log writer stops.
    background.cancel_in_flight();
    tracing::info!(message = "Draining the request log.");
    background.shutdown().await;
    drop(background);
    writer_handle.shutdown().await;
    audit_handle.shutdown().await;
    store.close().await;
    if let Some(m) = mock {
        m.shutdown().await;
    }
    tracing::info!(message = "Stopped.");
    result.context("server failed")
}

/// Says on start-up what can be called: the demo's models and the simulator's providers (fault
/// directives such as `demo-openai/gpt-4o-mini+fault-503` need their names), or that nothing
/// is configured.
fn announce_models(cfg: &plexus_core::config::Config, demo: bool) {
    if cfg.providers.is_empty() {
        tracing::warn!(
            message = "No provider is configured: every model request will fail. Run `plexus serve --demo` for the built-in simulator, set a provider key (OPENAI_API_KEY, ANTHROPIC_API_KEY, GEMINI_API_KEY, ...), or pass --config."
        );
        return;
    }
    if demo {
        let models: Vec<&str> = cfg.models.iter().map(|m| m.name.as_str()).collect();
        let providers: Vec<&str> = cfg.providers.iter().map(|p| p.name.as_str()).collect();
        tracing::info!(
            message = "Demo mode: the simulator answers every model.",
            models = %models.join(", "),
            providers = %providers.join(", "),
            hint = "address a provider directly with faults, e.g. demo-openai/gpt-4o-mini+fault-503"
        );
    }
}

/// SIGHUP: re-read the config and swap it in; a bad config is logged and ignored.
async fn reload_on_sighup(state: AppState, args: ServeArgs, demo_url: Option<String>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            return;
        };
        while hup.recv().await.is_some() {
            let loaded = match load_config(&args, demo_url.as_deref()) {
                Ok(cfg) => state.reload(cfg).await.map_err(|e| anyhow::anyhow!("{e}")),
                Err(e) => Err(e),
            };
            match loaded {
                Ok(()) => {
                    tracing::info!(message = "Configuration reloaded.");
                }
                Err(e) => {
                    tracing::error!(message = "Configuration reload failed; keeping the old one.", error = %e)
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (state, args, demo_url);
        std::future::pending::<()>().await;
    }
}

/// Resolves on SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            match signal(SignalKind::terminate()) {
                Ok(mut term) => {
                    tokio::select! {
                        _ = term.recv() => {},
                        _ = tokio::signal::ctrl_c() => {},
                    }
                }
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
        tracing::info!(message = "Shutting down: draining in-flight requests.");
    }
}

async fn vault(cmd: VaultCmd) -> Result<()> {
    use plexus_auth::vault::Kek;
    use secrecy::ExposeSecret;
    match cmd {
        VaultCmd::GenerateKey => {
            let kek = Kek::generate()?;
            println!("{}", kek.to_base64().expose_secret());
            Ok(())
        }
        VaultCmd::RotateKek {
            new_key_file,
            old_key_file,
            database,
        } => {
            let old =
                Kek::load(old_key_file.as_deref()).context("the current key-encryption key")?;
            let new = Kek::from_file(&new_key_file).context("the new key-encryption key")?;
            let store = plexus_store::Store::connect(&database)
                .await
                .with_context(|| format!("cannot open database {database}"))?;
            let (rewrapped, already) = plexus_server::rotate_kek(&store, &old, &new)
                .await
                .map_err(|e| anyhow::anyhow!("rotation stopped: {e} (rerun to resume)"))?;
            store.close().await;
            println!(
                "re-wrapped {rewrapped} credential(s); {already} already under key {}. Now set PLEXUS_ENCRYPTION_KEY to the new key.",
                new.kek_id()
            );
            Ok(())
        }
    }
}

async fn mock(listen: SocketAddr, config: Option<PathBuf>) -> Result<()> {
    let cfg = match config {
        Some(path) => {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            serde_yaml_from(&text)?
        }
        None => plexus_mock::MockConfig::default(),
    };
    let listener = bind(listen).await?;
    let local = listener.local_addr()?;
    println!("plexus mock listening on http://{local}");
    use std::io::Write;
    let _ = std::io::stdout().flush();
    plexus_mock::serve(listener, cfg, shutdown_signal()).await?;
    Ok(())
}

fn serde_yaml_from(text: &str) -> Result<plexus_mock::MockConfig> {
    serde_yaml::from_str(text).map_err(|e| anyhow::anyhow!("invalid mock config: {e}"))
}

async fn chat(
    conn: admin::Conn,
    model: String,
    system: Option<String>,
    max_tokens: Option<u32>,
    prompt: String,
) -> Result<()> {
    use plexus_sdk::{ChatCompletionRequest, Message, Role};
    use std::io::Write;
    // PLEXUS_URL is the server root everywhere; the OpenAI API is under /v1.
    let url = format!("{}/v1", conn.root()?);
    let client = plexus_sdk::Client::new(&url, conn.api_key.as_deref().filter(|k| !k.is_empty()))?;
    let mut messages = Vec::new();
    if let Some(s) = system {
        messages.push(Message::text(Role::System, s));
    }
    messages.push(Message::text(Role::User, prompt));
    let request = ChatCompletionRequest {
        model,
        messages,
        max_tokens,
        ..Default::default()
    };
    let mut stream = client
        .chat_stream(&request)
        .await
        .map_err(|e| chat_error(e, &url))?;
    let mut stdout = std::io::stdout();
    let mut usage = None;
    while let Some(chunk) = tokio::time::timeout(Duration::from_secs(600), stream.next())
        .await
        .context("no data for 10 minutes")?
    {
        let chunk = chunk.map_err(|e| chat_error(e, &url))?;
        for choice in &chunk.choices {
            if let Some(text) = &choice.delta.content {
                write!(stdout, "{text}")?;
                stdout.flush()?;
            }
        }
        if chunk.usage.is_some() {
            usage = chunk.usage;
        }
    }
    writeln!(stdout)?;
    if let Some(u) = usage {
        eprintln!(
            "[{} prompt + {} completion tokens]",
            u.prompt_tokens, u.completion_tokens
        );
    }
    Ok(())
}

/// A failed chat call as `plexus keys` reports an admin one: the server's message with its
/// code and status, or which URL could not be reached and why.
fn chat_error(e: plexus_sdk::Error, url: &str) -> anyhow::Error {
    admin::describe(e, url)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn errors_print_as_one_line_with_each_cause_once() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        // A wrapper that repeats its source's text, as `HTTP error: {0}` with `#[from]` does.
        let e = anyhow::Error::new(io)
            .context("HTTP error: refused")
            .context("cannot chat");
        assert_eq!(one_line(&e), "cannot chat: HTTP error: refused");
        let e = anyhow::anyhow!("404: <html>\n  <body>Not Found</body>\n</html>\n");
        assert_eq!(one_line(&e), "404: <html> <body>Not Found</body> </html>");
        let long = one_line(&anyhow::anyhow!("x".repeat(2000)));
        assert_eq!(long.chars().count(), 500);
        assert!(long.ends_with('…'));
    }

    /// Every subcommand has an about and every argument a help text (clap's own `--help` and
    /// `--version` aside), so `--help` explains every option.
    #[test]
    fn every_command_and_argument_is_described() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            if cmd.get_about().is_none() {
                missing.push(format!("{path}: no about"));
            }
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if matches!(id, "help" | "version") {
                    continue;
                }
                if arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("{path} <{id}>: no help"));
                }
            }
            for sub in cmd.get_subcommands() {
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut cli = Cli::command();
        cli.build();
        let mut missing = Vec::new();
        walk(&cli, "plexus", &mut missing);
        assert!(missing.is_empty(), "undescribed:\n{}", missing.join("\n"));
    }

    /// Only the commands that talk to a server take the connection options; every one that
    /// does takes both.
    #[test]
    fn connection_options_only_where_a_server_is_called() {
        fn leaves(cmd: &clap::Command, path: String, out: &mut Vec<(String, clap::Command)>) {
            if cmd.get_subcommands().next().is_none() {
                out.push((path.clone(), cmd.clone()));
            }
            for sub in cmd.get_subcommands() {
                leaves(sub, format!("{path} {}", sub.get_name()), out);
            }
        }
        let mut cli = Cli::command();
        cli.build();
        let mut all = Vec::new();
        leaves(&cli, "plexus".into(), &mut all);
        let offline = [
            "plexus serve",
            "plexus mock",
            "plexus migrate",
            "plexus errors",
            "plexus vault generate-key",
            "plexus vault rotate-kek",
            "plexus audit verify",
            "plexus cache eval",
            "plexus route",
            "plexus orchestrate",
        ];
        let mut online = 0;
        for (path, cmd) in all
            .iter()
            .filter(|(p, _)| !p.split(' ').any(|w| w == "help"))
        {
            let has = |id: &str| cmd.get_arguments().any(|a| a.get_id() == id);
            if offline.iter().any(|o| path.starts_with(o)) {
                assert!(
                    !has("url") && !has("api_key"),
                    "{path} lists connection options"
                );
            } else {
                assert!(
                    has("url") && has("api_key"),
                    "{path} lacks connection options"
                );
                online += 1;
            }
        }
        assert!(online >= 15, "{online} commands call a server");
    }
}

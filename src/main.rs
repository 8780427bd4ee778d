//! The gatehouse command line: run the gateway, or check a configuration without starting it.

use async_trait::async_trait;
use clap::{Parser, Subcommand, ValueEnum};
use gatehouse::clock::SystemClock;
use gatehouse::config::Config;
use pingora::server::{RunArgs, ShutdownSignal, ShutdownSignalWatch};
use std::path::PathBuf;
use std::sync::Arc;

/// mimalloc: fewer instructions per allocation than glibc on the request path, and less memory held
/// by the verified-token cache. Built without transparent huge pages (`no_thp`): on a kernel that
/// grants them on request, each 2 MiB page the allocator touched stayed resident whole.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "gatehouse",
    version,
    about = "An authentication gateway on Pingora"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum SessionsCommand {
    /// End every session of a subject, on every gateway sharing the store: their next request
    /// signs them out.
    Revoke {
        #[arg(short, long, default_value = "gateway.toml")]
        config: PathBuf,
        /// The subject (`sub`) whose sessions end.
        #[arg(long)]
        subject: String,
    },
}

#[derive(Subcommand)]
enum TokensCommand {
    /// End every refresh-token family of a subject and the access tokens issued from them, on every
    /// gateway sharing the store.
    Revoke {
        #[arg(short, long, default_value = "gateway.toml")]
        config: PathBuf,
        /// The subject (`sub`) whose refresh tokens end.
        #[arg(long)]
        subject: String,
    },
}

#[derive(Subcommand)]
enum Command {
    /// Start the gateway.
    Run {
        /// Configuration file.
        #[arg(short, long, default_value = "gateway.toml")]
        config: PathBuf,
        /// Log format.
        #[arg(long, value_enum, default_value_t = LogFormat::Text)]
        log_format: LogFormat,
        /// Take the listening sockets over from the running gatehouse, which then gets SIGQUIT
        /// (graceful binary upgrade: no connection is refused).
        #[arg(long)]
        upgrade: bool,
    },
    /// Ask the running gateway (through its admin listener) to reload its configuration file.
    Reload {
        #[arg(short, long, default_value = "gateway.toml")]
        config: PathBuf,
    },
    /// Browser sign-in sessions.
    Sessions {
        #[command(subcommand)]
        command: SessionsCommand,
    },
    /// Tokens the token service issued.
    Tokens {
        #[command(subcommand)]
        command: TokensCommand,
    },
    /// Validate a configuration and print every problem, without starting anything.
    Check {
        #[arg(short, long, default_value = "gateway.toml")]
        config: PathBuf,
    },
    /// Judge one request on a route as the gateway would, and print which rules held; exits 0 when
    /// the request would pass, 1 when it would be refused.
    Explain {
        #[arg(short, long, default_value = "gateway.toml")]
        config: PathBuf,
        /// The route's `name`.
        #[arg(long)]
        route: String,
        /// The bearer token (verified as the route would, keys fetched when needed).
        #[arg(long)]
        token: Option<String>,
        #[arg(long, default_value = "GET")]
        method: String,
        /// The path, with its query.
        #[arg(long, default_value = "/")]
        path: String,
        #[arg(long)]
        host: Option<String>,
        /// The client's address, as `client.ip`.
        #[arg(long)]
        client_ip: Option<std::net::IpAddr>,
        /// A request header, `name: value` (repeatable).
        #[arg(long = "header")]
        headers: Vec<String>,
        /// The MCP call's method and tool, on MCP routes.
        #[arg(long)]
        mcp_method: Option<String>,
        #[arg(long)]
        mcp_tool: Option<String>,
    },
    /// Read a client secret on standard input and print its `secret_hash` value.
    HashSecret {
        /// argon2id, for secrets people chose (the default sha256 suits generated secrets only).
        #[arg(long)]
        argon2: bool,
    },
    /// Client registration helpers.
    Client {
        #[command(subcommand)]
        command: ClientCommand,
    },
    /// Write a new signing key (PKCS#8 PEM, mode 0600) and print its kid.
    Keygen {
        /// The key's algorithm.
        #[arg(long, value_enum, default_value_t = KeyAlg::ES256)]
        alg: KeyAlg,
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
#[allow(clippy::upper_case_acronyms)]
enum KeyAlg {
    #[value(name = "ES256")]
    ES256,
    #[value(name = "RS256")]
    RS256,
    #[value(name = "EdDSA")]
    EdDSA,
}

impl KeyAlg {
    fn algorithm(self) -> jsonwebtoken::Algorithm {
        match self {
            KeyAlg::ES256 => jsonwebtoken::Algorithm::ES256,
            KeyAlg::RS256 => jsonwebtoken::Algorithm::RS256,
            KeyAlg::EdDSA => jsonwebtoken::Algorithm::EdDSA,
        }
    }
}

#[derive(Subcommand)]
enum ClientCommand {
    /// Print a fresh 256-bit secret once, and the [[clients]] block that stores only its hash.
    New {
        client_id: String,
        /// Scopes the client may ask for.
        #[arg(long, value_delimiter = ',')]
        scopes: Vec<String>,
    },
    /// List the clients that registered themselves at /oauth/register (in a shared store).
    List {
        #[arg(short, long, default_value = "gateway.toml")]
        config: PathBuf,
    },
    /// Remove a registered client: every gateway refuses it within 30 seconds, its refresh tokens
    /// at once with it, and its access tokens end with their lifetime.
    Remove {
        #[arg(short, long, default_value = "gateway.toml")]
        config: PathBuf,
        client_id: String,
    },
}

/// TERM drains, INT stops at once, QUIT hands the sockets to a new process; HUP reloads the
/// configuration.
struct Signals(Arc<gatehouse::server::reload::Reloader>);

#[async_trait]
impl ShutdownSignalWatch for Signals {
    async fn recv(&self) -> ShutdownSignal {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut int), Ok(mut quit), Ok(mut hup)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
            signal(SignalKind::quit()),
            signal(SignalKind::hangup()),
        ) else {
            tracing::error!("cannot install signal handlers");
            return ShutdownSignal::FastShutdown;
        };
        loop {
            tokio::select! {
                _ = term.recv() => return ShutdownSignal::GracefulTerminate,
                _ = int.recv() => return ShutdownSignal::FastShutdown,
                _ = quit.recv() => return ShutdownSignal::GracefulUpgrade,
                _ = hup.recv() => {
                    tracing::info!("SIGHUP: reloading the configuration");
                    self.0.reload(gatehouse::server::reload::ReloadBy::Signal).await;
                }
            }
        }
    }
}

/// What ends a command with exit status 1: printed once, as it reads, by `main`.
struct Failure(String);

impl std::fmt::Debug for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl<E: std::fmt::Display> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure(e.to_string())
    }
}

fn main() -> Result<(), Failure> {
    // before any command makes a TLS client (a rediss:// store, key-set fetches): rustls has two
    // providers compiled in (Pingora brings ring) and panics on a client when none is the default
    gatehouse::crypto::tls::install();
    match Cli::parse().command {
        Command::HashSecret { argon2 } => hash_secret(argon2),
        Command::Client {
            command: ClientCommand::New { client_id, scopes },
        } => new_client(&client_id, &scopes),
        Command::Client {
            command: ClientCommand::List { config },
        } => list_clients(&config),
        Command::Client {
            command: ClientCommand::Remove { config, client_id },
        } => remove_client(&config, &client_id),
        Command::Keygen { alg, out } => {
            let kid = gatehouse::token::keys::keygen(alg.algorithm(), &out)?;
            println!("wrote {} (kid {kid})", out.display());
            Ok(())
        }
        Command::Check { config } => {
            let c = Config::load(&config)?;
            for w in c.warnings() {
                eprintln!("warning: {w}");
            }
            println!(
                "{}: ok ({} routes, {} upstreams, {} issuers)",
                config.display(),
                c.routes.len(),
                c.upstreams.len(),
                c.issuers.len()
            );
            Ok(())
        }
        Command::Run {
            config,
            log_format,
            upgrade,
        } => run(&config, log_format, upgrade),
        Command::Reload { config } => reload(&config),
        Command::Explain {
            config,
            route,
            token,
            method,
            path,
            host,
            client_ip,
            headers,
            mcp_method,
            mcp_tool,
        } => {
            let headers = headers
                .iter()
                .map(|h| match h.split_once(':') {
                    Some((n, v)) => Ok((n.to_string(), v.to_string())),
                    None => Err(Failure(format!("--header {h:?} is not `name: value`"))),
                })
                .collect::<Result<_, _>>()?;
            let asked = gatehouse::server::explain::Asked {
                route,
                token,
                method,
                path,
                host,
                client_ip,
                headers,
                mcp_method,
                mcp_tool,
            };
            explain(&config, &asked)
        }
        Command::Sessions {
            command: SessionsCommand::Revoke { config, subject },
        } => revoke_sessions(&config, &subject),
        Command::Tokens {
            command: TokensCommand::Revoke { config, subject },
        } => revoke_tokens(&config, &subject),
    }
}

fn hash_secret(argon2: bool) -> Result<(), Failure> {
    let mut secret = String::new();
    std::io::stdin()
        .read_line(&mut secret)
        .map_err(|e| Failure(format!("cannot read the secret from standard input: {e}")))?;
    let secret = secret.trim_end_matches(['\r', '\n']);
    if secret.is_empty() {
        return Err(Failure("the secret is empty".into()));
    }
    let hash = if argon2 {
        gatehouse::crypto::argon2_hash(secret).map_err(|e| Failure(format!("cannot hash: {e}")))?
    } else {
        gatehouse::crypto::sha256_hash(secret)
    };
    println!("{hash}");
    Ok(())
}

fn new_client(client_id: &str, scopes: &[String]) -> Result<(), Failure> {
    let secret = gatehouse::crypto::random_token(32)
        .map_err(|e| Failure(format!("cannot make a secret: {e}")))?;
    let scopes: Vec<String> = scopes.iter().map(|s| format!("{s:?}")).collect();
    println!(
        "# client secret for {client_id} (shown once; store it in the client's secret store):"
    );
    println!("# {secret}");
    println!("[[clients]]");
    println!("client_id = {client_id:?}");
    println!(
        "secret_hash = \"{}\"",
        gatehouse::crypto::sha256_hash(&secret)
    );
    println!("grant_types = [\"client_credentials\"]");
    println!("scopes = [{}]", scopes.join(", "));
    Ok(())
}

/// Ends a subject's sessions in the configured store directly, so it works whether or not the
/// gateway runs (the in-memory store lives inside the gateway: use its admin port).
/// Prints the judgement of one request; the refusal is the error, so the exit status is 1.
fn explain(
    config: &std::path::Path,
    asked: &gatehouse::server::explain::Asked,
) -> Result<(), Failure> {
    let c = Config::load(config)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let clock = Arc::new(SystemClock);
    let report = runtime.block_on(gatehouse::server::explain::explain(&c, asked, clock))?;
    for line in &report.lines {
        println!("{line}");
    }
    match report.passes {
        true => Ok(()),
        false => Err(Failure("the request would be refused".into())),
    }
}

fn revoke_sessions(config: &std::path::Path, subject: &str) -> Result<(), Failure> {
    let store = shared_store(config, "/sessions/revoke")?;
    let n = store
        .end_sessions(&gatehouse::store::SessionsOf::Subject(subject))
        .map_err(|e| Failure(e.to_string()))?;
    println!("{n} session(s) of {subject} ended");
    Ok(())
}

/// Registered clients live in the store: with the memory store, inside the running gateway only.
fn client_store(config: &std::path::Path) -> Result<Arc<dyn gatehouse::store::Store>, Failure> {
    let c = Config::load(config)?;
    if c.store.is_memory() {
        return Err(Failure(
            "the memory store lives inside the running gateway, and its registered clients end with it".into(),
        ));
    }
    Ok(gatehouse::store::open(&c.store)?)
}

/// One line per registered client: id, when it registered, its name, scopes and redirect URIs.
fn list_clients(config: &std::path::Path) -> Result<(), Failure> {
    let all = client_store(config)?.registered_clients()?;
    for c in &all {
        let when = humantime::format_rfc3339_seconds(
            std::time::UNIX_EPOCH + std::time::Duration::from_secs(c.created_at),
        );
        println!(
            "{}\t{when}\t{}\tscopes={}\tredirect_uris={}",
            c.client_id,
            c.client_name.as_deref().unwrap_or("-"),
            c.scopes.join(" "),
            c.redirect_uris.join(" ")
        );
    }
    println!("{} registered client(s)", all.len());
    Ok(())
}

fn remove_client(config: &std::path::Path, client_id: &str) -> Result<(), Failure> {
    match client_store(config)?.remove_client(client_id)? {
        true => println!("{client_id} removed"),
        false => return Err(Failure(format!("no registered client {client_id}"))),
    }
    Ok(())
}

/// The configured shared store, which the command-line changes directly so it works whether or
/// not the gateway runs (the in-memory store lives inside the gateway: `admin` names its endpoint).
fn shared_store(
    config: &std::path::Path,
    admin: &str,
) -> Result<Arc<dyn gatehouse::store::Store>, Failure> {
    let c = Config::load(config)?;
    if c.store.is_memory() {
        return Err(Failure(format!(
            "the memory store lives inside the running gateway: POST {admin}?subject=... on its admin port"
        )));
    }
    Ok(gatehouse::store::open(&c.store)?)
}

/// Ends a subject's refresh-token families and the access tokens issued from them.
fn revoke_tokens(config: &std::path::Path, subject: &str) -> Result<(), Failure> {
    use gatehouse::clock::Clock;
    let store = shared_store(config, "/tokens/revoke")?;
    let failed = |e: gatehouse::store::StoreError| Failure(e.to_string());
    let families = store
        .families_of(subject, SystemClock.now_secs())
        .map_err(failed)?;
    let mut tokens = 0;
    for f in &families {
        tokens += store.revoke_family(f).map_err(failed)?.len();
    }
    // the command's revocation belongs in the audit stream too: emitted, then written before exit
    let c = Config::load(config)?;
    let telemetry =
        gatehouse::telemetry::Telemetry::start(c.telemetry.as_ref(), Arc::new(SystemClock))?;
    let audit =
        gatehouse::audit::Audit::start(c.audit.as_ref(), Arc::new(SystemClock), &telemetry)?;
    audit.emit(|| gatehouse::audit::Event::subject_tokens_revoked("cli", subject, families.len()));
    audit.close();
    telemetry.close();
    println!(
        "{} refresh famil{} of {subject} ended ({tokens} access token(s) revoked)",
        families.len(),
        if families.len() == 1 { "y" } else { "ies" }
    );
    Ok(())
}

/// POSTs /reload to the admin listener named in the configuration, and prints the answer.
fn reload(config: &std::path::Path) -> Result<(), Failure> {
    use std::io::{Read, Write};
    let c = Config::load(config)?;
    let admin = c.server.admin_listen.ok_or_else(|| {
        Failure("server.admin_listen is off: send SIGHUP to the gateway instead".into())
    })?;
    let mut s = std::net::TcpStream::connect_timeout(&admin, std::time::Duration::from_secs(5))
        .map_err(|e| {
            Failure(format!(
                "cannot reach the gateway's admin listener {admin}: {e}"
            ))
        })?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(60)))?;
    write!(
        s,
        "POST /reload HTTP/1.1\r\nHost: {admin}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    let mut answer = String::new();
    s.read_to_string(&mut answer)?;
    let (head, body) = answer
        .split_once("\r\n\r\n")
        .unwrap_or((answer.as_str(), ""));
    println!("{}", body.trim());
    if head.starts_with("HTTP/1.1 200") {
        Ok(())
    } else {
        Err(Failure("the configuration was not reloaded".into()))
    }
}

fn run(config: &std::path::Path, log_format: LogFormat, upgrade: bool) -> Result<(), Failure> {
    let _log_guard = gatehouse::observe::access_log::init_logging(log_format == LogFormat::Json)
        .map_err(|e| Failure(format!("cannot start the log writer: {e}")))?;
    let c = Config::load(config)?;
    for w in c.warnings() {
        tracing::warn!("{w}");
    }
    let mut built = gatehouse::server::build_with(c, Arc::new(SystemClock), upgrade)
        .map_err(|e| Failure(format!("gatehouse cannot start: {e}")))?;
    // With --upgrade this waits for the old process's listening sockets.
    built.server.bootstrap();
    let config = built.shared.load_full().config.clone();
    let s = &config.server;
    tracing::info!(
        tls = ?s.listen_tls,
        plain = ?s.listen_plain,
        admin = ?s.admin_listen,
        routes = config.routes.len(),
        "gatehouse listening"
    );
    built.server.run(RunArgs {
        shutdown_signal: Box::new(Signals(built.reloader.clone())),
    });
    Ok(())
}

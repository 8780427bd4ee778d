//! The gatehouse command line: run the gateway, or check a configuration without starting it.

use async_trait::async_trait;
use clap::{Parser, Subcommand};
use gatehouse::clock::SystemClock;
use gatehouse::config::Config;
use pingora::server::{RunArgs, ShutdownSignal, ShutdownSignalWatch};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

/// mimalloc: fewer instructions per allocation than glibc on the request path, and less memory held
/// by the verified-token cache.
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
enum Command {
    /// Start the gateway.
    Run {
        /// Configuration file.
        #[arg(short, long, default_value = "gateway.toml")]
        config: PathBuf,
        /// Log format: text or json.
        #[arg(long, default_value = "text")]
        log_format: String,
    },
    /// Validate a configuration and print every problem, without starting anything.
    Check {
        #[arg(short, long, default_value = "gateway.toml")]
        config: PathBuf,
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
        /// ES256, RS256 or EdDSA.
        #[arg(long, default_value = "ES256")]
        alg: String,
        #[arg(long)]
        out: PathBuf,
    },
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
}

/// TERM drains, INT stops at once, QUIT hands the sockets to a new process; HUP is answered, not fatal.
struct Signals;

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
                _ = hup.recv() => tracing::warn!("SIGHUP: configuration reload is not supported; restart gatehouse to apply changes"),
            }
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::HashSecret { argon2 } => {
            let mut secret = String::new();
            if std::io::stdin().read_line(&mut secret).is_err() {
                eprintln!("cannot read the secret from standard input");
                return ExitCode::FAILURE;
            }
            let secret = secret.trim_end_matches(['\r', '\n']);
            if secret.is_empty() {
                eprintln!("the secret is empty");
                return ExitCode::FAILURE;
            }
            let hash = if argon2 {
                match gatehouse::token::argon2_hash(secret) {
                    Ok(h) => h,
                    Err(e) => {
                        eprintln!("cannot hash: {e}");
                        return ExitCode::FAILURE;
                    }
                }
            } else {
                gatehouse::token::sha256_hash(secret)
            };
            println!("{hash}");
            ExitCode::SUCCESS
        }
        Command::Client {
            command: ClientCommand::New { client_id, scopes },
        } => {
            let secret = match gatehouse::token::random_token(32) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("cannot make a secret: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let scopes: Vec<String> = scopes.iter().map(|s| format!("{s:?}")).collect();
            println!("# client secret for {client_id} (shown once; store it in the client's secret store):");
            println!("# {secret}");
            println!("[[clients]]");
            println!("client_id = {client_id:?}");
            println!(
                "secret_hash = \"{}\"",
                gatehouse::token::sha256_hash(&secret)
            );
            println!("grant_types = [\"client_credentials\"]");
            println!("scopes = [{}]", scopes.join(", "));
            ExitCode::SUCCESS
        }
        Command::Keygen { alg, out } => {
            let alg = match alg.as_str() {
                "ES256" => jsonwebtoken::Algorithm::ES256,
                "RS256" => jsonwebtoken::Algorithm::RS256,
                "EdDSA" => jsonwebtoken::Algorithm::EdDSA,
                other => {
                    eprintln!("--alg {other:?}: use ES256, RS256 or EdDSA");
                    return ExitCode::FAILURE;
                }
            };
            match gatehouse::token::keys::keygen(alg, &out) {
                Ok(kid) => {
                    println!("wrote {} (kid {kid})", out.display());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("{e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Check { config } => match Config::load(&config) {
            Ok(c) => {
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
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::FAILURE
            }
        },
        Command::Run { config, log_format } => {
            let _log_guard = gatehouse::telemetry::init_logging(log_format == "json");
            let c = match Config::load(&config) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::FAILURE;
                }
            };
            for w in c.warnings() {
                tracing::warn!("{w}");
            }
            let built = match gatehouse::build(c, Arc::new(SystemClock)) {
                Ok(b) => b,
                Err(e) => {
                    eprintln!("gatehouse cannot start: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let s = &built.shared.config.server;
            tracing::info!(
                tls = ?s.listen_tls,
                plain = ?s.listen_plain,
                admin = ?s.admin_listen,
                routes = built.shared.config.routes.len(),
                "gatehouse listening"
            );
            built.server.run(RunArgs {
                shutdown_signal: Box::new(Signals),
            });
            ExitCode::SUCCESS
        }
    }
}

//! `prism`: the command line. `serve` runs the gateway, `check-config` validates a config, `keys`
//! rotates or generates the master key of the control-plane store.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use prism_gateway::server::{self, ServeOptions};
use prism_gateway::store::{rotate, MasterKey};
use prism_gateway::{table::Table, telemetry};
use secrecy::ExposeSecret;

#[derive(Parser)]
#[command(
    name = "prism",
    version,
    about = "Prism: an OpenAI-compatible LLM gateway on Pingora"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start the gateway.
    Serve {
        /// Config file (default: $PRISM_CONFIG, else conf/prism.toml).
        #[arg(short = 'c', long = "config")]
        config: Option<PathBuf>,
        /// Take over the listening sockets of a running instance (zero-downtime upgrade).
        #[arg(short = 'u', long)]
        upgrade: bool,
        /// Run in the background.
        #[arg(short = 'd', long)]
        daemon: bool,
        /// Check that the server can start with this config, then exit.
        #[arg(short = 't', long)]
        test: bool,
    },
    /// Manage the master key that encrypts provider API keys in the store.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Exit 0 when the local gateway is ready (for container HEALTHCHECKs): GET /readyz on
    /// the control plane ($PRISM_ADMIN_LISTEN, default 127.0.0.1:8081).
    Healthcheck {
        /// host:port of the control plane.
        #[arg(long)]
        addr: Option<String>,
    },
    /// Validate a config file and print every error with its path.
    CheckConfig {
        /// Config file (default: $PRISM_CONFIG, else conf/prism.toml).
        #[arg(short = 'c', long = "config")]
        config: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Re-encrypt every stored provider key under a new master key, all or nothing. The
    /// current key comes from PRISM_MASTER_KEY or PRISM_MASTER_KEY_FILE; the new one from
    /// --new-key-file, else PRISM_NEW_MASTER_KEY or PRISM_NEW_MASTER_KEY_FILE. A gateway
    /// running on the store keeps serving but refuses writes (409) until it is restarted with
    /// the new key.
    Rotate {
        /// Config file, for `server.data_dir` (default: $PRISM_CONFIG, else conf/prism.toml).
        #[arg(short = 'c', long = "config")]
        config: Option<PathBuf>,
        /// Store directory (default: $PRISM_DATA_DIR, else the config's server.data_dir).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// File holding the new master key: 32 bytes, base64.
        #[arg(long)]
        new_key_file: Option<PathBuf>,
    },
    /// Print a new random master key (32 bytes, base64) for PRISM_MASTER_KEY.
    Generate,
}

fn keys(command: KeysCommand) -> ExitCode {
    match command {
        KeysCommand::Generate => {
            println!("{}", MasterKey::generate().to_base64().expose_secret());
            ExitCode::SUCCESS
        }
        KeysCommand::Rotate {
            config,
            data_dir,
            new_key_file,
        } => match rotate::command(config, data_dir, new_key_file, &|k| std::env::var(k).ok()) {
            Ok(msg) => {
                println!("{msg}");
                ExitCode::SUCCESS
            }
            Err(msg) => {
                eprintln!("{msg}");
                ExitCode::FAILURE
            }
        },
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Keys { command } => keys(command),
        Command::Healthcheck { addr } => {
            let addr = addr
                .or_else(|| std::env::var("PRISM_ADMIN_LISTEN").ok())
                .unwrap_or_else(|| "127.0.0.1:8081".to_string());
            match server::readyz(&addr) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("not ready: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::CheckConfig { config } => {
            let path = server::config_path(config);
            let result = server::load_file(&path).and_then(|c| Table::build(&c, Vec::new()).map(|_| c));
            match result {
                Ok(c) => {
                    println!(
                        "{}: OK ({} providers, {} routes)",
                        path.display(),
                        c.providers.len(),
                        c.routes.len()
                    );
                    ExitCode::SUCCESS
                }
                Err(errors) => {
                    for e in &errors {
                        eprintln!("{e}");
                    }
                    eprintln!("{}: {} error(s)", path.display(), errors.len());
                    ExitCode::FAILURE
                }
            }
        }
        Command::Serve {
            config,
            upgrade,
            daemon,
            test,
        } => {
            telemetry::init_logging();
            let opts = ServeOptions {
                config: server::config_path(config),
                upgrade,
                daemon,
                test,
            };
            match server::run(opts) {
                Ok(()) => ExitCode::SUCCESS,
                Err(errors) => {
                    for e in &errors {
                        log::error!("{e}");
                        eprintln!("{e}");
                    }
                    ExitCode::FAILURE
                }
            }
        }
    }
}

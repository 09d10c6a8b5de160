//! `prism`: the command line. `serve` runs the gateway, `check-config` validates a config.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use prism_gateway::server::{self, ServeOptions};
use prism_gateway::{table::Table, telemetry};

#[derive(Parser)]
#[command(name = "prism", version, about = "Prism: an OpenAI-compatible LLM gateway on Pingora")]
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
    /// Validate a config file and print every error with its path.
    CheckConfig {
        /// Config file (default: $PRISM_CONFIG, else conf/prism.toml).
        #[arg(short = 'c', long = "config")]
        config: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::CheckConfig { config } => {
            let path = server::config_path(config);
            let result = server::load_file(&path).and_then(|c| Table::build(&c, Vec::new()).map(|_| c));
            match result {
                Ok(c) => {
                    println!("{}: OK ({} providers, {} routes)", path.display(), c.providers.len(), c.routes.len());
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
        Command::Serve { config, upgrade, daemon, test } => {
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

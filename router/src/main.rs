//! The `sluice` command: `sluice` or `sluice run [FILE]` runs the router, `sluice check [FILE]` validates a routes
//! file (and loads its plugins), `sluice plugin test PLUGIN.wasm --world auth --cases CASES.toml` runs a plugin
//! under the real host against a table of cases. FILE defaults to `routes.toml` in the working directory.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use sluice::logging::{self, LogFormat};

#[derive(Debug, Parser)]
#[command(name = "sluice", version, about = "A media router: routes in routes.toml, WebAssembly plugins")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Log format (also SLUICE_LOG_FORMAT); RUST_LOG sets the filter.
    #[arg(long, global = true, value_enum, env = "SLUICE_LOG_FORMAT", default_value = "text")]
    log_format: LogFormat,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the router (the default).
    Run {
        /// The routes file.
        #[arg(default_value = "routes.toml")]
        config: PathBuf,
    },
    /// Validate a routes file and exit: 0 if valid, 1 with every problem listed otherwise.
    Check {
        #[arg(default_value = "routes.toml")]
        config: PathBuf,
    },
    /// Work with plugins.
    Plugin {
        #[command(subcommand)]
        command: PluginCommand,
    },
}

#[derive(Debug, Subcommand)]
enum PluginCommand {
    /// Run a plugin under the real host (limits, no network) against a table of cases; print each decision with
    /// its time and memory. Exit 0 when every case got its `expect`ed decision.
    Test {
        /// The plugin's .wasm component.
        plugin: PathBuf,
        /// The world it implements (only `auth` can be tested yet).
        #[arg(long, default_value = "auth")]
        world: String,
        /// The cases: `config`, optional `limits` and `grants` as in routes.toml, and one [[case]] per request.
        #[arg(long)]
        cases: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Run { config: PathBuf::from("routes.toml") }) {
        Command::Check { config } => match sluice::runtime::load_config(&config, &Default::default()) {
            Ok((table, _, _)) => {
                println!("{}: ok ({} routes, {} plugins)", config.display(), table.routes.len(), table.plugins.len());
                ExitCode::SUCCESS
            }
            Err(errors) => {
                eprintln!("{errors}");
                ExitCode::FAILURE
            }
        },
        Command::Plugin { command: PluginCommand::Test { plugin, world, cases } } => {
            match sluice::plugin::cases::run(&plugin, &world, &cases) {
                Ok(report) => {
                    print!("{}", report.text);
                    if report.all_passed { ExitCode::SUCCESS } else { ExitCode::FAILURE }
                }
                Err(e) => {
                    eprintln!("{e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Run { config } => {
            logging::init(cli.log_format);
            let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("cannot start the async runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match rt.block_on(sluice::server::run(config)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e:#}");
                    eprintln!("sluice: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

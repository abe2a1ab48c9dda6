//! The `sluice` command: `sluice [run] [FILE]` runs the router, `sluice check [FILE]` validates a routes file (and
//! loads its plugins), `sluice plugin test PLUGIN.wasm --world auth --cases CASES.toml` runs a plugin under the
//! real host against a table of cases, `sluice passwd` and `sluice token` make credentials for the built-in auth
//! plugins, `sluice import mediamtx.yml [-o routes.toml]` converts a MediaMTX configuration. FILE defaults to
//! `routes.toml` in the working directory.

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
    /// Print an argon2id hash of a password read from standard input, for `builtin:auth-users`' `password_hash`.
    Passwd,
    /// Print a JWT that the routes file's `builtin:auth-jwt` plugin accepts (its secret, audience and issuer).
    Token {
        /// The routes file declaring the plugin.
        #[arg(long, default_value = "routes.toml")]
        config: PathBuf,
        /// What the token allows, ACTION:ROUTE (publish, read, playback, api or *; `*` in ROUTE matches anything).
        #[arg(long, required = true)]
        allow: Vec<String>,
        /// Who holds it (the `sub` claim).
        #[arg(long, default_value = "sluice-cli")]
        sub: String,
        /// How long it stays valid.
        #[arg(long, default_value = "24h")]
        expires: String,
        /// The plugin, when the file has several auth-jwt plugins.
        #[arg(long)]
        plugin: Option<String>,
        /// The RS256 private key (PEM file), for plugins configured with a public key.
        #[arg(long)]
        private_key: Option<PathBuf>,
    },
    /// Convert a MediaMTX configuration (mediamtx.yml) into a routes file; print what did not convert.
    Import {
        /// MediaMTX's configuration file.
        mediamtx_yml: PathBuf,
        /// Where to write the routes file (standard output when left out).
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Replace the output file if it exists.
        #[arg(long)]
        force: bool,
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
        /// The world it implements: `auth` (a table of [[case]]s) or `signaling` (a script of [[step]]s).
        #[arg(long, default_value = "auth")]
        world: String,
        /// The cases: `config`, optional `limits` and `grants` as in routes.toml, then one [[case]] per request
        /// (auth) or one [[step]] per event (signaling).
        #[arg(long)]
        cases: PathBuf,
    },
}

fn token(
    config: PathBuf,
    allow: Vec<String>,
    sub: String,
    expires: &str,
    plugin: Option<String>,
    private_key: Option<PathBuf>,
) -> Result<String, String> {
    let table = sluice::config::load(&config).map_err(|e| e.to_string())?;
    let valid_for = sluice::config::units::parse_duration(expires).map_err(|e| format!("--expires: {e}"))?;
    let private_key = match private_key {
        Some(path) => Some(std::fs::read_to_string(&path).map_err(|e| format!("reading {}: {e}", path.display()))?),
        None => None,
    };
    let request = sluice::credentials::TokenRequest { subject: sub, allow, valid_for, plugin, private_key };
    sluice::credentials::mint_token(&table, &request, &|name| std::env::var(name).ok())
}

/// `sluice FILE` means `sluice run FILE`: when the first word that is not an option is no command, `run` goes in
/// front of it. (A positional argument beside subcommands would make clap take `run` itself for a file.)
fn run_by_default(mut args: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    const COMMANDS: [&str; 7] = ["run", "check", "import", "plugin", "passwd", "token", "help"];
    let mut i = 1;
    while let Some(arg) = args.get(i).and_then(|a| a.to_str()) {
        if arg == "--log-format" {
            i += 2; // and its value
        } else if arg.starts_with('-') {
            i += 1;
        } else {
            if !COMMANDS.contains(&arg) {
                args.insert(i, "run".into());
            }
            break;
        }
    }
    args
}

fn main() -> ExitCode {
    let cli = Cli::parse_from(run_by_default(std::env::args_os().collect()));
    match cli.command.unwrap_or(Command::Run { config: PathBuf::from("routes.toml") }) {
        Command::Check { config } => match sluice::runtime::check_config(&config) {
            Ok((table, _, _)) => {
                let templates = table.routes.iter().filter(|r| r.is_template()).count();
                let routes = table.routes.len() - templates;
                let templates = match templates {
                    0 => String::new(),
                    1 => ", 1 template".to_string(),
                    n => format!(", {n} templates"),
                };
                println!("{}: ok ({routes} routes{templates}, {} plugins)", config.display(), table.plugins.len());
                ExitCode::SUCCESS
            }
            Err(errors) => {
                eprintln!("{errors}");
                ExitCode::FAILURE
            }
        },
        Command::Import { mediamtx_yml, output, force } => {
            match sluice::import::import_mediamtx(&mediamtx_yml, output.as_deref(), force) {
                Ok(conversion) => {
                    if output.is_none() {
                        print!("{}", conversion.routes_toml);
                    }
                    for skipped in &conversion.skipped {
                        eprintln!("not converted: {skipped}");
                    }
                    if let Some(output) = &output {
                        eprintln!(
                            "wrote {} ({} settings not converted); check it with `sluice check {}`",
                            output.display(),
                            conversion.skipped.len(),
                            output.display()
                        );
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("sluice import: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Passwd => {
            let mut password = String::new();
            if let Err(e) = std::io::stdin().read_line(&mut password) {
                eprintln!("cannot read the password from standard input: {e}");
                return ExitCode::FAILURE;
            }
            match sluice::credentials::hash_password(password.trim_end_matches(['\r', '\n'])) {
                Ok(hash) => {
                    println!("{hash}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("sluice passwd: {e} (type it on standard input: `echo -n 'PASSWORD' | sluice passwd`)");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Token { config, allow, sub, expires, plugin, private_key } => {
            match token(config, allow, sub, &expires, plugin, private_key) {
                Ok(token) => {
                    println!("{token}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("sluice token: {e}");
                    ExitCode::FAILURE
                }
            }
        }
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
            let result = rt.block_on(sluice::server::run(config));
            // Blocking work still running (a reload validating a big file, a plugin compiling) is not waited for:
            // shutdown has its own budgets, and dropping the runtime would wait for it without one.
            rt.shutdown_timeout(std::time::Duration::from_secs(1));
            match result {
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

#[cfg(test)]
mod tests {
    use super::run_by_default;

    fn args(words: &[&str]) -> Vec<String> {
        let os = run_by_default(words.iter().map(Into::into).collect());
        os.into_iter().map(|a| a.to_string_lossy().into_owned()).collect()
    }

    #[test]
    fn a_file_alone_is_run() {
        assert_eq!(args(&["sluice", "my.toml"]), ["sluice", "run", "my.toml"]);
        assert_eq!(
            args(&["sluice", "--log-format", "json", "my.toml"]),
            ["sluice", "--log-format", "json", "run", "my.toml"]
        );
        assert_eq!(
            args(&["sluice", "--log-format=json", "my.toml"]),
            ["sluice", "--log-format=json", "run", "my.toml"]
        );
        for unchanged in [
            &["sluice"][..],
            &["sluice", "check", "x.toml"],
            &["sluice", "--log-format", "json", "run", "x.toml"],
            &["sluice", "plugin", "test", "p.wasm"],
            &["sluice", "--help"],
        ] {
            assert_eq!(args(unchanged), unchanged, "{unchanged:?}");
        }
    }
}

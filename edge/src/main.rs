//! # sluice-edge
//!
//! Runs on a Raspberry Pi (or any Linux box with a camera): captures H.264 and pushes it into a Sluice router
//! over WHIP (RTMP as the fallback), or reads a route over WHEP and records it to MP4 on the local disk.
//!
//! ```text
//! sluice-edge push --source rpicam --to http://router:8889/cam1/whip --token SECRET
//! sluice-edge push --source test --to rtmp://router/cam1/STREAMKEY
//! rpicam-vid -t 0 --inline -o - | sluice-edge push --source stdin --to http://router:8889/cam1/whip
//! sluice-edge pull http://router:8889/cam1/whep --record /var/lib/sluice-edge/cam1 --quota 20GB
//! sluice-edge check --config /etc/sluice-edge/edge.toml
//! ```
//!
//! Layout: [`config`] (options from the command line and edge.toml), [`source`] (capture threads: test pattern,
//! Annex B streams, rpicam-vid, V4L2), [`push`] (WHIP and RTMP, reconnecting), [`pull`] (WHEP to MP4 segments),
//! [`webrtc`] (the str0m peer both share), [`stats`] (the periodic log line).

mod config;
mod pull;
mod push;
mod source;
mod stats;
mod webrtc;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tokio::sync::watch;

use config::{FileConfig, PullOptions, PullPlan, PushOptions, PushPlan, SourceKind};

#[derive(Debug, Parser)]
#[command(name = "sluice-edge", version, about = "Push a camera into a Sluice router, or record a route locally")]
struct Cli {
    /// edge.toml with a [push] and a [pull] table; the command line overrides it
    #[arg(long, global = true, env = "SLUICE_EDGE_CONFIG")]
    config: Option<PathBuf>,
    /// Log lines as JSON (for journald or a log shipper) instead of text
    #[arg(long, global = true)]
    log_json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Capture H.264 and push it to a router (WHIP, or RTMP)
    Push(PushOptions),
    /// Read a route (WHEP, or RTMP) and record it to MP4 segments
    Pull {
        /// http://HOST:8889/ROUTE/whep or rtmp://HOST/ROUTE/TOKEN (or --from)
        url: Option<String>,
        #[command(flatten)]
        options: PullOptions,
    },
    /// Check the configuration and the source, say what would run, and exit
    Check,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_json);
    let file = match &cli.config {
        Some(path) => match FileConfig::load(path) {
            Ok(f) => f,
            Err(e) => {
                eprintln!("sluice-edge: {e}");
                return ExitCode::from(2);
            }
        },
        None => FileConfig::default(),
    };
    match cli.command {
        Command::Check => check(file),
        Command::Push(options) => match PushPlan::resolve(options.or(file.push)) {
            Ok(plan) => serve(|stop| push::run(plan, stop)),
            Err(e) => usage(&e),
        },
        Command::Pull { url, mut options } => {
            options.from = options.from.or(url);
            match PullPlan::resolve(options.or(file.pull)) {
                Ok(plan) => serve(|stop| pull::run(plan, stop)),
                Err(e) => usage(&e),
            }
        }
    }
}

fn usage(error: &str) -> ExitCode {
    eprintln!("sluice-edge: {error}");
    ExitCode::from(2)
}

fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if json {
        builder.json().flatten_event(true).init();
    } else {
        builder.init();
    }
}

/// Runs a push or a pull on a single-threaded runtime (camera threads aside) until it ends or SIGINT/SIGTERM asks
/// it to stop, which it does cleanly: the router is told the session ended, the segment being recorded is
/// committed. A stop that lands in the middle of connecting (a DNS lookup, a router that does not answer) gets
/// a few seconds, then the program exits anyway.
fn serve<F, Fut>(run: F) -> ExitCode
where
    F: FnOnce(watch::Receiver<bool>) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sluice-edge: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async move {
        let (stop_tx, stop) = watch::channel(false);
        let mut stopping = stop.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("stopping");
            let _ = stop_tx.send(true);
        });
        let run = run(stop);
        tokio::pin!(run);
        tokio::select! {
            r = &mut run => r,
            _ = async { let _ = stopping.changed().await; tokio::time::sleep(STOP_GRACE).await } => {
                tracing::warn!("still busy {}s after the stop; exiting", STOP_GRACE.as_secs());
                Ok(())
            }
        }
    });
    // A read of a terminal or a stuck lookup on a blocking thread must not hold the exit.
    rt.shutdown_timeout(std::time::Duration::from_millis(500));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

const STOP_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

async fn wait_for_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// `sluice-edge check`: resolves what edge.toml configures and looks at the source it names.
fn check(file: FileConfig) -> ExitCode {
    let mut ok = true;
    let mut any = false;
    if file.push.to.is_some() || file.push.source.is_some() {
        any = true;
        match PushPlan::resolve(file.push) {
            Ok(plan) => {
                let v = plan.video;
                println!(
                    "push: {:?} {}x{} at {} fps, {} bit/s, a keyframe every {} frames, to {}",
                    plan.source,
                    v.width,
                    v.height,
                    v.fps,
                    v.bitrate,
                    v.keyframe_every,
                    plan.target.describe()
                );
                if let Err(e) = check_source(&plan.source) {
                    println!("push: {e}");
                    ok = false;
                }
            }
            Err(e) => {
                println!("push: {e}");
                ok = false;
            }
        }
    }
    if file.pull.from.is_some() || file.pull.record.is_some() {
        any = true;
        match PullPlan::resolve(file.pull) {
            Ok(plan) => println!(
                "pull: {} into {} (quota {} bytes, {}s segments)",
                plan.from,
                plan.record.display(),
                plan.quota,
                plan.segment_duration.as_secs()
            ),
            Err(e) => {
                println!("pull: {e}");
                ok = false;
            }
        }
    }
    if !any {
        println!("nothing configured: give --config edge.toml with a [push] or [pull] table");
        return ExitCode::from(2);
    }
    if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

/// Whether the source can start here: the file or device exists, rpicam-vid is installed.
fn check_source(source: &SourceKind) -> Result<(), String> {
    match source {
        SourceKind::Test | SourceKind::Stdin => Ok(()),
        SourceKind::File(path) => std::fs::metadata(path).map(|_| ()).map_err(|e| format!("{}: {e}", path.display())),
        SourceKind::Rpicam => {
            let program = source::rpicam::program();
            let found = std::env::var_os("PATH")
                .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(&program).is_file()))
                || std::path::Path::new(&program).is_file();
            if found { Ok(()) } else { Err(format!("{program} is not installed (sudo apt install rpicam-apps)")) }
        }
        SourceKind::V4l2 { device, .. } => {
            std::fs::metadata(device).map(|_| ()).map_err(|e| format!("{}: {e}", device.display()))
        }
    }
}

//! # sluice-edge
//!
//! Runs on a Raspberry Pi (or any Linux box with a camera), captures H.264 and pushes it into a Sluice router.
//!
//! What this crate will hold (the edge issue fills it in):
//! - Capture sources: libcamera (behind a cargo feature: it needs libcamera >= 0.4, as on Raspberry Pi OS),
//!   V4L2 devices (USB cameras with H.264, or raw frames through the Pi 4's V4L2 M2M encoder), `rpicam-vid` as a
//!   child process, and a synthetic test source so it runs and is tested anywhere.
//! - Push over WHIP (or RTSP/RTMP) with reconnect and exponential backoff.
//!
//! Today it only parses its command line and says that capture is not built yet, so nobody mistakes it for a
//! working pusher.

#![forbid(unsafe_code)]

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--version" || a == "-V") {
        println!("sluice-edge {}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    eprintln!(
        "sluice-edge {}: capture and push are not implemented yet; see edge/src/main.rs for the plan",
        env!("CARGO_PKG_VERSION")
    );
    ExitCode::from(2)
}

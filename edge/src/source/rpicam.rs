//! `rpicam-vid` as a child process: Raspberry Pi OS's camera tool (libcamera underneath) encodes H.264, on the
//! hardware encoder of the Pi 0-4 and in software (libav) on the Pi 5, and writes Annex B to its standard output,
//! which [`super::annexb`] reads, stamping frames as they arrive (the camera keeps the time, not a pacer). When it
//! exits or hangs (camera unplugged, a crash) it is started again with backoff.
//!
//! `SLUICE_EDGE_RPICAM` names another program to run instead (tests use a script that plays a file).

use std::process::Stdio;
use std::time::{Duration, Instant};

use sluice_client::backoff::Backoff;

use super::Output;
use crate::config::Video;

/// The arguments for a stream of `video`: endless, SPS/PPS before every keyframe (`--inline`, so a viewer can
/// join at any keyframe), flushed frame by frame, no preview window.
pub fn args(video: Video) -> Vec<String> {
    let mut args: Vec<String> =
        ["-t", "0", "--inline", "--flush", "--nopreview", "--codec", "h264"].into_iter().map(String::from).collect();
    for (flag, value) in [
        ("--width", video.width),
        ("--height", video.height),
        ("--framerate", video.fps),
        ("--bitrate", video.bitrate),
        ("--intra", video.keyframe_every),
    ] {
        args.push(flag.to_string());
        args.push(value.to_string());
    }
    // Baseline keeps every browser able to decode it (WebRTC's common H.264 profile).
    args.extend(["--profile", "baseline", "-o", "-"].map(String::from));
    args
}

/// rpicam-vid writes a frame every 1/fps; this long without a byte means it hung.
const STALL: Duration = Duration::from_secs(5);

pub fn program() -> String {
    std::env::var("SLUICE_EDGE_RPICAM").unwrap_or_else(|_| "rpicam-vid".to_string())
}

pub async fn run(video: Video, out: Output) -> anyhow::Result<()> {
    let program = program();
    let mut backoff = Backoff::default();
    loop {
        let started = Instant::now();
        let child = tokio::process::Command::new(&program)
            .args(args(video))
            .stdout(Stdio::piped())
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .spawn();
        let mut child = match child {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                anyhow::bail!("{program} is not installed: `sudo apt install rpicam-apps` on Raspberry Pi OS")
            }
            Err(e) => anyhow::bail!("cannot start {program}: {e}"),
        };
        tracing::info!(pid = child.id(), "started {program}");
        let stdout = child.stdout.take().ok_or_else(|| anyhow::anyhow!("{program} has no standard output"))?;
        let mut reader = super::annexb::Reader::live(STALL);
        let read = reader.read_all(stdout, &out).await;
        // Ended either way: the pusher is gone (stop the camera) or the camera tool exited.
        let _ = child.start_kill();
        let status = child.wait().await;
        if out.is_closed() {
            return Ok(());
        }
        let ran = started.elapsed();
        let wait = backoff.failed(Some(ran));
        tracing::warn!(
            status = ?status.ok(),
            error = ?read.err(),
            frames = reader.frames,
            "{program} stopped after {:.1}s; starting it again in {:.1}s",
            ran.as_secs_f64(),
            wait.as_secs_f64()
        );
        tokio::time::sleep(wait.max(Duration::from_millis(100))).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asks_for_what_the_plan_says() {
        let video = Video { width: 1280, height: 720, fps: 30, bitrate: 2_000_000, keyframe_every: 60 };
        let a = args(video).join(" ");
        assert!(a.starts_with("-t 0 --inline"), "{a}");
        for part in ["--width 1280", "--height 720", "--framerate 30", "--bitrate 2000000", "--intra 60", "-o -"] {
            assert!(a.contains(part), "{part} missing from {a}");
        }
    }
}

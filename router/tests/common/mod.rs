//! Runs the real `sluice` binary for integration tests and follows its JSON log, so tests wait on events the
//! router reports instead of sleeping.

#![allow(dead_code, reason = "each test binary uses a different part of this module")]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub mod jwt;

pub const WAIT: Duration = Duration::from_secs(20);

/// A running router; killed on drop so a failing test never leaves it behind.
pub struct RouterProcess {
    pub child: Child,
    pub http: String,
    logs: mpsc::Receiver<serde_json::Value>,
    pub seen: Vec<serde_json::Value>,
}

impl RouterProcess {
    /// Starts `sluice run CONFIG` and waits for it to report its HTTP address.
    pub fn start(config: &Path) -> RouterProcess {
        Self::start_with_env(config, &[])
    }

    /// [`start`](Self::start) with extra environment variables.
    pub fn start_with_env(config: &Path, env: &[(&str, &str)]) -> RouterProcess {
        let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(["--log-format", "json", "run"])
            .arg(config)
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start sluice");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, logs) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let value = serde_json::from_str(&line).unwrap_or_else(|_| serde_json::json!({ "raw": line }));
                if tx.send(value).is_err() {
                    return;
                }
            }
        });
        let mut router = RouterProcess { child, http: String::new(), logs, seen: Vec::new() };
        let up = router.wait_log(|l| l["message"].as_str().is_some_and(|m| m.contains("is up")));
        router.http = up["http"].as_str().expect("http address in the startup line").to_string();
        router
    }

    /// Waits for a log line matching `pred` (lines seen before are skipped over, and kept in `seen`).
    pub fn wait_log(&mut self, pred: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.logs.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if pred(&line) {
                        return line;
                    }
                }
                Err(_) => panic!("no such log line within {WAIT:?}; saw:\n{:#?}", self.seen),
            }
        }
    }

    /// A log line matching `pred` printed at any time (during startup included), waiting if there is none yet.
    pub fn saw_or_wait(&mut self, pred: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
        self.drain();
        if let Some(line) = self.seen.iter().find(|l| pred(l)) {
            return line.clone();
        }
        self.wait_log(pred)
    }

    /// Takes every log line printed so far into `seen`, without waiting.
    pub fn drain(&mut self) {
        while let Ok(line) = self.logs.try_recv() {
            self.seen.push(line);
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill").args(["-s", signal, &self.child.id().to_string()]).status().expect("kill");
        assert!(status.success());
    }

    /// Waits for the process to exit on its own and returns its status.
    pub fn wait_exit(&mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "sluice did not exit within {WAIT:?}");
            // Polling a child's exit status has no event to await short of blocking; 20 ms steps keep it cheap.
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for RouterProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Replaces a file the way editors do: write a temporary file beside it, then rename over it.
pub fn save_like_an_editor(path: &Path, text: &str) {
    let tmp: PathBuf = path.with_extension("toml.swp");
    std::fs::write(&tmp, text).expect("write temp");
    std::fs::rename(&tmp, path).expect("rename");
}

/// ffmpeg publishing a live test pattern and tone (H.264 + AAC) over RTMP for `seconds`.
pub fn ffmpeg_rtmp_publish(url: &str, seconds: u32) -> std::process::Child {
    Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-re", "-f", "lavfi", "-i", "testsrc=size=640x360:rate=30"])
        .args(["-f", "lavfi", "-i", "sine=frequency=1000:sample_rate=48000", "-t", &seconds.to_string()])
        .args(["-c:v", "libx264", "-preset", "veryfast", "-tune", "zerolatency", "-pix_fmt", "yuv420p", "-g", "30"])
        .args(["-c:a", "aac", "-b:a", "96k", "-f", "flv", url])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ffmpeg")
}

pub fn sluice() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
}

/// ffprobe's decoded video frame count and the container duration (s) of a file.
pub fn ffprobe_video(path: &Path) -> (u64, f64) {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-count_frames", "-select_streams", "v:0"])
        .args(["-show_entries", "stream=codec_name,nb_read_frames:format=duration", "-of", "json"])
        .arg(path)
        .output()
        .expect("run ffprobe (installed by .ci/test)");
    assert!(out.status.success(), "ffprobe failed on {}: {}", path.display(), String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("ffprobe json");
    let frames = v["streams"][0]["nb_read_frames"].as_str().and_then(|s| s.parse().ok()).unwrap_or(0);
    let duration = v["format"]["duration"].as_str().and_then(|s| s.parse().ok()).unwrap_or(0.0);
    (frames, duration)
}

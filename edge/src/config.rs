//! Options: every one may come from the command line or from `edge.toml` (the command line wins), then is checked
//! and resolved into a plan ([`PushPlan`], [`PullPlan`]) with defaults filled in. Nothing here does IO but reading
//! the file.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use url::Url;

/// `edge.toml`: a `[push]` and a `[pull]` table with the same keys as the command-line options
/// (`keyframe_interval` for `--keyframe-interval`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    #[serde(default)]
    pub push: PushOptions,
    #[serde(default)]
    pub pull: PullOptions,
}

impl FileConfig {
    pub fn load(path: &Path) -> Result<FileConfig, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
    }
}

/// What to capture and where to push it.
#[derive(Debug, Default, Clone, Deserialize, clap::Args)]
#[serde(deny_unknown_fields)]
pub struct PushOptions {
    /// test | stdin | file:PATH | rpicam | v4l2:/dev/videoN
    #[arg(long)]
    pub source: Option<String>,
    /// http://HOST:8889/ROUTE/whip (WHIP), or rtmp://HOST/ROUTE/KEY (RTMP)
    #[arg(long)]
    pub to: Option<String>,
    /// Bearer token (or stream key) for WHIP
    #[arg(long, env = "SLUICE_EDGE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    #[arg(long)]
    pub width: Option<u32>,
    #[arg(long)]
    pub height: Option<u32>,
    #[arg(long)]
    pub fps: Option<u32>,
    /// Encoder bitrate, e.g. 2M or 2500k
    #[arg(long)]
    pub bitrate: Option<String>,
    /// Time between keyframes, e.g. 2s
    #[arg(long)]
    pub keyframe_interval: Option<String>,
    /// The V4L2 memory-to-memory encoder raw cameras are encoded through (default /dev/video11, the Pi 0-4's)
    #[arg(long)]
    pub encoder: Option<String>,
    /// How often stats are logged, e.g. 10s
    #[arg(long)]
    pub stats_interval: Option<String>,
}

/// Which route to read and where to record it.
#[derive(Debug, Default, Clone, Deserialize, clap::Args)]
#[serde(deny_unknown_fields)]
pub struct PullOptions {
    /// http://HOST:8889/ROUTE/whep, or rtmp://HOST/ROUTE/TOKEN (rtmp://HOST/live/ROUTE without auth)
    #[arg(long = "from")]
    pub from: Option<String>,
    /// Bearer token for WHEP
    #[arg(long, env = "SLUICE_EDGE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Directory the MP4 segments are written to
    #[arg(long)]
    pub record: Option<PathBuf>,
    /// The most the recordings may take; the oldest segments are deleted to stay under it, e.g. 20GB
    #[arg(long)]
    pub quota: Option<String>,
    /// Length of one MP4 file, e.g. 10m
    #[arg(long)]
    pub segment_duration: Option<String>,
    /// Stop after this long (default: run until stopped)
    #[arg(long)]
    pub duration: Option<String>,
    #[arg(long)]
    pub stats_interval: Option<String>,
}

impl PushOptions {
    /// These options, with what the file says for anything not given here.
    pub fn or(self, file: PushOptions) -> PushOptions {
        PushOptions {
            source: self.source.or(file.source),
            to: self.to.or(file.to),
            token: self.token.or(file.token),
            width: self.width.or(file.width),
            height: self.height.or(file.height),
            fps: self.fps.or(file.fps),
            bitrate: self.bitrate.or(file.bitrate),
            keyframe_interval: self.keyframe_interval.or(file.keyframe_interval),
            encoder: self.encoder.or(file.encoder),
            stats_interval: self.stats_interval.or(file.stats_interval),
        }
    }
}

impl PullOptions {
    pub fn or(self, file: PullOptions) -> PullOptions {
        PullOptions {
            from: self.from.or(file.from),
            token: self.token.or(file.token),
            record: self.record.or(file.record),
            quota: self.quota.or(file.quota),
            segment_duration: self.segment_duration.or(file.segment_duration),
            duration: self.duration.or(file.duration),
            stats_interval: self.stats_interval.or(file.stats_interval),
        }
    }
}

/// Where frames come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceKind {
    /// A moving pattern with a clock, encoded here: runs anywhere, needs no camera.
    Test,
    /// Annex B H.264 on standard input (`rpicam-vid -t 0 --inline -o - | sluice-edge push --source stdin`).
    Stdin,
    /// An Annex B H.264 file, played at `fps` and looped.
    File(PathBuf),
    /// `rpicam-vid` started and restarted by the edge; its standard output is read.
    Rpicam,
    /// A V4L2 camera: H.264 straight from the device, or raw frames encoded through `encoder`.
    V4l2 { device: PathBuf, encoder: PathBuf },
}

/// What the encoder is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Video {
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    pub bitrate: u32,
    /// Frames from one keyframe to the next.
    pub keyframe_every: u32,
}

/// Where the stream goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Whip { url: Url, token: Option<String> },
    Rtmp { url: Url },
}

impl Target {
    /// The URL as it may be logged: a stream key in an RTMP path stays out of logs.
    pub fn describe(&self) -> String {
        match self {
            Target::Whip { url, .. } => url.to_string(),
            Target::Rtmp { url } => {
                let mut shown = url.clone();
                shown.set_query(None);
                let path = shown.path().trim_start_matches('/').to_string();
                let segments: Vec<&str> = path.split('/').collect();
                if segments.len() > 1 {
                    let mut kept: Vec<&str> = segments[..segments.len() - 1].to_vec();
                    kept.push("***");
                    shown.set_path(&kept.join("/"));
                }
                shown.to_string()
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushPlan {
    pub source: SourceKind,
    pub target: Target,
    pub video: Video,
    pub stats_every: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullPlan {
    pub from: Url,
    pub token: Option<String>,
    pub record: PathBuf,
    pub quota: u64,
    pub segment_duration: Duration,
    pub duration: Option<Duration>,
    pub stats_every: Duration,
}

const DEFAULT_STATS: Duration = Duration::from_secs(10);

impl PushPlan {
    pub fn resolve(o: PushOptions) -> Result<PushPlan, String> {
        let source = match o.source.as_deref().unwrap_or("test") {
            "test" => SourceKind::Test,
            "stdin" | "-" => SourceKind::Stdin,
            "rpicam" => SourceKind::Rpicam,
            other => {
                if let Some(path) = other.strip_prefix("file:") {
                    SourceKind::File(PathBuf::from(path))
                } else if let Some(device) = other.strip_prefix("v4l2:") {
                    let encoder = PathBuf::from(o.encoder.as_deref().unwrap_or("/dev/video11"));
                    SourceKind::V4l2 { device: PathBuf::from(device), encoder }
                } else {
                    return Err(format!("source {other:?}: use test, stdin, file:PATH, rpicam or v4l2:/dev/videoN"));
                }
            }
        };
        let to = o.to.ok_or("say where to push: --to http://HOST:8889/ROUTE/whip or rtmp://HOST/ROUTE/KEY")?;
        let url = Url::parse(&to).map_err(|e| format!("--to {to:?}: {e}"))?;
        let target = match url.scheme() {
            "https" => return Err(no_tls(&to)),
            "http" => {
                if url.host_str().is_none() {
                    return Err(format!("--to {to:?} has no host"));
                }
                Target::Whip { url, token: o.token.filter(|t| !t.is_empty()) }
            }
            "rtmp" => {
                sluice_client::rtmp::RtmpTarget::parse(&url).map_err(|e| format!("--to {to:?}: {e}"))?;
                Target::Rtmp { url }
            }
            other => {
                return Err(format!("--to {to:?}: {other}:// is not a push target; use http:// (WHIP) or rtmp://"));
            }
        };
        // The test source sends uncompressed macroblocks: a smaller default picture keeps it light.
        let (default_w, default_h) = if source == SourceKind::Test { (640, 360) } else { (1280, 720) };
        let width = o.width.unwrap_or(default_w);
        let height = o.height.unwrap_or(default_h);
        for (name, v) in [("width", width), ("height", height)] {
            if !(16..=4096).contains(&v) || v % 2 != 0 {
                return Err(format!("{name} {v}: use an even number from 16 to 4096"));
            }
        }
        let fps = o.fps.unwrap_or(30);
        if !(1..=120).contains(&fps) {
            return Err(format!("fps {fps}: use 1 to 120"));
        }
        let bitrate = match o.bitrate.as_deref() {
            None => 2_000_000,
            Some(text) => parse_bitrate(text)?,
        };
        let keyframe_interval = match o.keyframe_interval.as_deref() {
            None => Duration::from_secs(2),
            Some(text) => parse_duration("keyframe_interval", text)?,
        };
        if keyframe_interval > Duration::from_secs(60) {
            return Err("keyframe_interval: at most 60s (viewers wait for a keyframe to start)".into());
        }
        let keyframe_every = ((keyframe_interval.as_secs_f64() * f64::from(fps)).round() as u32).max(1);
        let stats_every = optional_duration("stats_interval", o.stats_interval.as_deref(), DEFAULT_STATS)?;
        Ok(PushPlan { source, target, video: Video { width, height, fps, bitrate, keyframe_every }, stats_every })
    }
}

impl PullPlan {
    pub fn resolve(o: PullOptions) -> Result<PullPlan, String> {
        let from = o.from.ok_or("say which route to read: http://HOST:8889/ROUTE/whep or rtmp://HOST/ROUTE/TOKEN")?;
        let from = Url::parse(&from).map_err(|e| format!("{from:?}: {e}"))?;
        match from.scheme() {
            "https" => return Err(no_tls(from.as_str())),
            "http" if from.host_str().is_some() => {}
            "rtmp" => {
                sluice_client::rtmp::RtmpTarget::parse(&from).map_err(|e| format!("{from}: {e}"))?;
            }
            _ => {
                return Err(format!(
                    "{from}: pull reads over WHEP (http://HOST:8889/ROUTE/whep) or RTMP (rtmp://HOST/ROUTE/TOKEN, \
                     or rtmp://HOST/live/ROUTE when the route needs no token)"
                ));
            }
        }
        let record = o.record.ok_or("say where to record: --record DIR")?;
        let quota = match o.quota.as_deref() {
            None => 10 * 1000 * 1000 * 1000,
            Some(text) => parse_size(text)?,
        };
        if quota < 10_000_000 {
            return Err(format!("quota {quota} bytes: at least 10MB (one segment must fit)"));
        }
        let segment_duration =
            optional_duration("segment_duration", o.segment_duration.as_deref(), Duration::from_secs(600))?;
        if segment_duration < Duration::from_secs(1) {
            return Err("segment_duration: at least 1s".into());
        }
        let duration = o.duration.as_deref().map(|d| parse_duration("duration", d)).transpose()?;
        let stats_every = optional_duration("stats_interval", o.stats_interval.as_deref(), DEFAULT_STATS)?;
        Ok(PullPlan {
            from,
            token: o.token.filter(|t| !t.is_empty()),
            record,
            quota,
            segment_duration,
            duration,
            stats_every,
        })
    }
}

/// The edge speaks plain HTTP to the router (WHIP/WHEP carry their media encrypted either way: DTLS-SRTP).
fn no_tls(url: &str) -> String {
    format!(
        "{url}: https:// is not supported by sluice-edge yet; use the router's http:// address (the media is encrypted by WebRTC either way)"
    )
}

fn optional_duration(key: &str, text: Option<&str>, default: Duration) -> Result<Duration, String> {
    text.map_or(Ok(default), |t| parse_duration(key, t))
}

fn parse_duration(key: &str, text: &str) -> Result<Duration, String> {
    let d = sluice_plugin_record_mp4::config::parse_duration(text).map_err(|e| format!("{key}: {e}"))?;
    if d.is_zero() {
        return Err(format!("{key}: must be more than 0"));
    }
    Ok(d)
}

/// `2M`, `2500k`, `800000` (bits per second).
pub fn parse_bitrate(text: &str) -> Result<u32, String> {
    let t = text.trim();
    let (digits, scale) = match t.char_indices().last() {
        Some((i, 'k' | 'K')) => (&t[..i], 1_000.0),
        Some((i, 'm' | 'M')) => (&t[..i], 1_000_000.0),
        _ => (t, 1.0),
    };
    let value: f64 = digits.trim().parse().map_err(|_| format!("bitrate {text:?}: write it like 2M or 2500k"))?;
    let bps = value * scale;
    if !(50_000.0..=50_000_000.0).contains(&bps) {
        return Err(format!("bitrate {text:?}: use 50k to 50M"));
    }
    Ok(bps as u32)
}

/// `20GB`, `500MB`, `1.5TB`, `1000000` (bytes; decimal units, as disks are sold).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let scale: u64 = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "KB" | "K" => 1_000,
        "MB" | "M" => 1_000_000,
        "GB" | "G" => 1_000_000_000,
        "TB" | "T" => 1_000_000_000_000,
        _ => return Err(format!("size {text:?}: write it like 20GB or 500MB")),
    };
    let value: f64 = digits.trim().parse().map_err(|_| format!("size {text:?}: write it like 20GB or 500MB"))?;
    if !(value.is_finite() && value >= 0.0) {
        return Err(format!("size {text:?}: must be a positive number"));
    }
    Ok((value * scale as f64) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn push(to: &str) -> PushOptions {
        PushOptions { to: Some(to.into()), ..Default::default() }
    }

    #[test]
    fn defaults_fill_in_and_the_command_line_wins_over_the_file() {
        let file: FileConfig = toml::from_str(
            "[push]\nsource = \"rpicam\"\nto = \"http://r:8889/cam/whip\"\nfps = 25\nkeyframe_interval = \"1s\"\n",
        )
        .expect("parse");
        let cli = PushOptions { fps: Some(15), ..Default::default() };
        let plan = PushPlan::resolve(cli.or(file.push)).expect("plan");
        assert_eq!(plan.source, SourceKind::Rpicam);
        assert_eq!(plan.video, Video { width: 1280, height: 720, fps: 15, bitrate: 2_000_000, keyframe_every: 15 });
        assert!(matches!(plan.target, Target::Whip { token: None, .. }));
        let test = PushPlan::resolve(push("rtmp://r/cam/KEY")).expect("plan");
        assert_eq!((test.source, test.video.width, test.video.height), (SourceKind::Test, 640, 360));
        assert_eq!(test.target.describe(), "rtmp://r/cam/***", "the stream key stays out of logs");
    }

    #[test]
    fn bad_options_are_refused_with_the_reason() {
        let cases = [
            (PushOptions { source: Some("webcam".into()), ..push("http://r/x/whip") }, "use test, stdin"),
            (PushOptions::default(), "say where to push"),
            (push("ftp://r/x"), "not a push target"),
            (push("https://r/x/whip"), "https:// is not supported"),
            (push("rtmp://r/only-app"), "rtmp://host"),
            (PushOptions { width: Some(641), ..push("http://r/x/whip") }, "even number"),
            (PushOptions { fps: Some(0), ..push("http://r/x/whip") }, "1 to 120"),
            (PushOptions { bitrate: Some("fast".into()), ..push("http://r/x/whip") }, "2500k"),
            (PushOptions { keyframe_interval: Some("5m".into()), ..push("http://r/x/whip") }, "at most 60s"),
        ];
        for (options, want) in cases {
            let err = PushPlan::resolve(options.clone()).expect_err("refused");
            assert!(err.contains(want), "{options:?}: {err}");
        }
        assert!(toml::from_str::<FileConfig>("[push]\ncolour = 1\n").is_err(), "unknown keys are refused");
    }

    #[test]
    fn sizes_bitrates_and_pull_plans() {
        assert_eq!(parse_bitrate("2M"), Ok(2_000_000));
        assert_eq!(parse_bitrate("2500k"), Ok(2_500_000));
        assert!(parse_bitrate("1").is_err());
        assert_eq!(parse_size("20GB"), Ok(20_000_000_000));
        assert_eq!(parse_size("1.5 MB"), Ok(1_500_000));
        assert!(parse_size("-1GB").is_err());
        assert!(parse_size("lots").is_err());
        let plan = PullPlan::resolve(PullOptions {
            from: Some("http://r:8889/cam/whep".into()),
            record: Some("/tmp/rec".into()),
            quota: Some("1GB".into()),
            ..Default::default()
        })
        .expect("plan");
        assert_eq!((plan.quota, plan.segment_duration), (1_000_000_000, Duration::from_secs(600)));
        let err = PullPlan::resolve(PullOptions { from: Some("rtsp://r/cam".into()), ..Default::default() })
            .expect_err("refused");
        assert!(err.contains("WHEP"), "{err}");
    }
}

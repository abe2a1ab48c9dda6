//! MP4 segments on the local disk, written by the router's own recorder (record-mp4's segmenter, run natively)
//! into a directory, with a size quota kept by deleting the oldest finished segments: a Pi's card fills up, and a
//! recorder that stops when it does loses the newest footage, which is the footage people want.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use sluice_media::Codec;
use sluice_media::h264::{NAL_PPS, NAL_SPS, avc_decoder_config, nal_type, parse_sps};
use sluice_plugin_record_mp4::config::{Config, ConfigSpec};
use sluice_plugin_record_mp4::media::{Sample, TrackInfo};
use sluice_plugin_record_mp4::mux::Part;
use sluice_plugin_record_mp4::segmenter::{CreateError, DirFile, DirFiles, Files, Segmenter};

pub const VIDEO: u32 = 1;
/// How long a recording waits for an expected audio track once video is there.
const AUDIO_WAIT: Duration = Duration::from_secs(2);
pub const AUDIO: u32 = 2;

/// A sample as the pull hands it over: H.264 as NAL units (times in 1/90000 s), audio as one packet (times in
/// the audio track's clock).
#[derive(Debug)]
pub enum Media {
    Video { nals: Vec<Bytes>, pts: i64, dts: i64 },
    Audio { packet: Bytes, pts: i64 },
}

/// The Opus track of a WHEP session (48 kHz, stereo, as WebRTC sends it).
pub fn opus_track() -> TrackInfo {
    TrackInfo {
        id: AUDIO,
        codec: Codec::Opus,
        clock_rate: 48_000,
        width: 0,
        height: 0,
        channels: 2,
        sample_rate: 48_000,
        config: Vec::new(),
    }
}

/// An AAC track (RTMP) from its AudioSpecificConfig; its clock is its sample rate.
pub fn aac_track(config: &[u8], sample_rate: u32, channels: u8) -> TrackInfo {
    TrackInfo {
        id: AUDIO,
        codec: Codec::Aac,
        clock_rate: sample_rate,
        width: 0,
        height: 0,
        channels: u32::from(channels),
        sample_rate,
        config: config.to_vec(),
    }
}

#[derive(Debug)]
pub struct Recorder {
    dir: PathBuf,
    quota: u64,
    config: Config,
    segmenter: Option<Segmenter<QuotaFiles>>,
    /// The video track's SPS and PPS: the track (and the segment) is made again when they change.
    parameter_sets: Option<(Bytes, Bytes)>,
    video: Option<TrackInfo>,
    audio: Option<TrackInfo>,
    /// The session said audio will come: the recording waits this long for its track before starting without it,
    /// so the first segment is not cut when the audio configuration arrives just after the first keyframe.
    audio_expected: Option<std::time::Instant>,
    pub video_frames: u64,
    pub audio_packets: u64,
    /// Where this session's timestamps are placed on the recording's timeline.
    session: SessionTime,
    /// The last video decode time written, on the recording's timeline (1/90000 s).
    last_video_dts: Option<i64>,
    /// The last audio time written, on the recording's timeline (s).
    last_audio_end: Option<f64>,
}

/// Each session's timestamps start wherever its source's clocks are (a new WebRTC session, a restarted router, a
/// wrapped RTP clock), and WebRTC gives each track its own origin. Each track is placed by its first sample's
/// arrival: the session starts one frame after what was recorded before it, and the tracks keep the distance
/// they arrived with.
#[derive(Debug)]
struct SessionTime {
    epoch: std::time::Instant,
    /// Seconds on the recording's timeline where the session starts.
    base: f64,
    video: Option<i64>,
    audio: Option<i64>,
}

impl SessionTime {
    /// The offset of a track (kept in `slot` from its first sample on).
    fn offset(&self, slot: Option<i64>, ts: i64, clock: u32, arrival: std::time::Instant) -> i64 {
        slot.unwrap_or_else(|| {
            let at = self.base + arrival.saturating_duration_since(self.epoch).as_secs_f64();
            (at * f64::from(clock)).round() as i64 - ts
        })
    }
}

impl Recorder {
    pub fn new(dir: &Path, quota: u64, segment_duration: Duration) -> anyhow::Result<Recorder> {
        std::fs::create_dir_all(dir).map_err(|e| anyhow::anyhow!("{}: {e}", dir.display()))?;
        let spec = ConfigSpec {
            part_duration: Some("1s".into()),
            segment_duration: Some(format!("{}s", segment_duration.as_secs().max(1))),
            path: Some("%Y-%m-%d_%H-%M-%S".into()),
        };
        let config = Config::from_spec(spec).map_err(anyhow::Error::msg)?;
        Ok(Recorder {
            dir: dir.to_path_buf(),
            quota,
            config,
            segmenter: None,
            parameter_sets: None,
            video: None,
            audio: None,
            audio_expected: None,
            video_frames: 0,
            audio_packets: 0,
            session: SessionTime { epoch: std::time::Instant::now(), base: 0.0, video: None, audio: None },
            last_video_dts: None,
            last_audio_end: None,
        })
    }

    /// A new session (a connection) starts: its timestamps are placed after what was recorded.
    pub fn new_session(&mut self) {
        let end = self
            .last_video_dts
            .map(|d| d as f64 / 90_000.0)
            .into_iter()
            .chain(self.last_audio_end)
            .fold(None, |m: Option<f64>, t| Some(m.map_or(t, |m| m.max(t))));
        let base = end.map_or(0.0, |e| e + 1.0 / 30.0);
        self.session = SessionTime { epoch: std::time::Instant::now(), base, video: None, audio: None };
    }

    /// Writes a sample that arrived at `arrival`. `false` when video waits for a keyframe (with its parameter
    /// sets) to start from.
    pub fn write(&mut self, media: Media, arrival: std::time::Instant) -> anyhow::Result<bool> {
        let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as u64;
        match media {
            Media::Video { nals, pts, dts } => {
                let keyframe = nals.iter().any(|n| nal_type(n) == sluice_media::h264::NAL_IDR);
                let sps = nals.iter().find(|n| nal_type(n) == NAL_SPS);
                let pps = nals.iter().find(|n| nal_type(n) == NAL_PPS);
                if let (Some(sps), Some(pps)) = (sps, pps)
                    && self.parameter_sets.as_ref() != Some(&(sps.clone(), pps.clone()))
                {
                    self.set_video(sps.clone(), pps.clone())?;
                }
                if self.segmenter.is_none() && self.audio_expected.is_some() {
                    self.apply_tracks()?;
                }
                // Nothing can be written before the first keyframe with its parameter sets.
                let Some(segmenter) = self.segmenter.as_mut() else { return Ok(false) };
                // Each session starts at a keyframe: pictures after a reconnect refer to ones it never had.
                if self.session.video.is_none() && !keyframe {
                    return Ok(false);
                }
                let offset = self.session.offset(self.session.video, dts, 90_000, arrival);
                self.session.video = Some(offset);
                let (pts, dts) = (pts.saturating_add(offset), dts.saturating_add(offset));
                let payload = sluice_media::h264::to_avcc(nals.iter().map(|n| &n[..])).to_vec();
                let len = payload.len() as u32;
                let sample = Sample { track: VIDEO, pts, dts, keyframe, offset: 0, len, wallclock_ms: Some(now_ms) };
                segmenter.write(Arc::new(payload), [sample]).map_err(anyhow::Error::msg)?;
                self.video_frames += 1;
                self.last_video_dts = Some(dts);
            }
            Media::Audio { packet, pts } => {
                let Some(segmenter) = self.segmenter.as_mut() else { return Ok(true) };
                if self.video_frames == 0 {
                    return Ok(true);
                }
                let clock = self.audio.as_ref().map_or(48_000, |a| a.clock_rate);
                let offset = self.session.offset(self.session.audio, pts, clock, arrival);
                self.session.audio = Some(offset);
                let pts = pts.saturating_add(offset);
                self.last_audio_end = Some(pts as f64 / f64::from(clock.max(1)));
                let len = packet.len() as u32;
                let sample =
                    Sample { track: AUDIO, pts, dts: pts, keyframe: true, offset: 0, len, wallclock_ms: Some(now_ms) };
                segmenter.write(Arc::new(packet.to_vec()), [sample]).map_err(anyhow::Error::msg)?;
                self.audio_packets += 1;
            }
        }
        Ok(true)
    }

    /// Audio will come (an RTMP stream's metadata says so): wait a little for its track. Over WHEP the answer
    /// offers audio whether the route has it or not, so a WHEP pull adds Opus when the first packet comes.
    pub fn expect_audio(&mut self) {
        if self.audio.is_none() && self.segmenter.is_none() {
            self.audio_expected = Some(std::time::Instant::now() + AUDIO_WAIT);
        }
    }

    /// The route's audio track, once known (a new one starts a new segment at the next keyframe).
    pub fn set_audio(&mut self, track: TrackInfo) -> anyhow::Result<()> {
        if self.audio.as_ref() != Some(&track) {
            self.audio = Some(track);
            self.apply_tracks()?;
        }
        Ok(())
    }

    fn set_video(&mut self, sps: Bytes, pps: Bytes) -> anyhow::Result<()> {
        let info = parse_sps(&sps).map_err(|e| anyhow::anyhow!("the route's SPS: {e}"))?;
        tracing::info!(picture = %info.describe(), "recording");
        self.video = Some(TrackInfo {
            id: VIDEO,
            codec: Codec::H264,
            clock_rate: 90_000,
            width: info.width,
            height: info.height,
            channels: 0,
            sample_rate: 0,
            config: avc_decoder_config(&sps, &pps).to_vec(),
        });
        self.parameter_sets = Some((sps, pps));
        self.apply_tracks()
    }

    /// Hands the tracks to the segmenter, making it once there is video (and the audio expected, or the wait for it
    /// is over).
    fn apply_tracks(&mut self) -> anyhow::Result<()> {
        let Some(video) = self.video.clone() else { return Ok(()) };
        if self.segmenter.is_none() && self.audio.is_none() {
            match self.audio_expected {
                Some(until) if std::time::Instant::now() < until => return Ok(()),
                Some(_) => tracing::info!("no audio track arrived; recording video only"),
                None => {}
            }
        }
        self.audio_expected = None;
        let tracks: Vec<TrackInfo> = std::iter::once(video).chain(self.audio.clone()).collect();
        match self.segmenter.as_mut() {
            Some(s) => s.update_tracks(tracks).map_err(anyhow::Error::msg)?,
            None => {
                let files = QuotaFiles { inner: DirFiles::new(&self.dir), dir: self.dir.clone(), quota: self.quota };
                self.segmenter =
                    Some(Segmenter::new(files, "pull", tracks, self.config.clone()).map_err(anyhow::Error::msg)?);
            }
        }
        Ok(())
    }

    /// Commits the segment being written.
    pub fn finish(&mut self) -> anyhow::Result<Vec<String>> {
        let Some(s) = self.segmenter.as_mut() else { return Ok(Vec::new()) };
        s.finish().map_err(anyhow::Error::msg)?;
        Ok(s.committed().to_vec())
    }
}

/// [`DirFiles`] that keeps the directory's MP4 files under a quota.
#[derive(Debug)]
pub struct QuotaFiles {
    inner: DirFiles,
    dir: PathBuf,
    quota: u64,
}

impl Files for QuotaFiles {
    type File = DirFile;
    type Payload = Vec<u8>;

    fn create(&mut self, path: &str) -> Result<DirFile, CreateError> {
        enforce_quota(&self.dir, self.quota);
        self.inner.create(path)
    }

    fn append(&mut self, file: &mut DirFile, data: &[u8]) -> Result<(), String> {
        self.inner.append(file, data)
    }

    fn append_part(&mut self, file: &mut DirFile, part: Part<Vec<u8>>) -> Result<(), String> {
        self.inner.append_part(file, part)
    }

    fn sync(&mut self, file: &mut DirFile) -> Result<(), String> {
        self.inner.sync(file)
    }

    fn commit(&mut self, file: DirFile) -> Result<(), String> {
        self.inner.commit(file)?;
        enforce_quota(&self.dir, self.quota);
        Ok(())
    }
}

/// Deletes the oldest finished segments (`*.mp4`, oldest name first: names are start times) until everything in
/// the directory, the segment being written included, fits in `quota`.
pub fn enforce_quota(dir: &Path, quota: u64) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let mut finished: Vec<(String, u64)> = Vec::new();
    let mut total = 0u64;
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let size = e.metadata().map(|m| m.len()).unwrap_or(0);
        if name.ends_with(".mp4") {
            finished.push((name, size));
            total += size;
        } else if name.ends_with(".mp4.part") {
            total += size;
        }
    }
    finished.sort();
    for (name, size) in finished {
        if total <= quota {
            break;
        }
        match std::fs::remove_file(dir.join(&name)) {
            Ok(()) => {
                total -= size;
                tracing::info!(file = name, bytes = size, "deleted the oldest segment to stay under the quota");
            }
            Err(e) => tracing::warn!(file = name, "cannot delete: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_quota_deletes_the_oldest_finished_segments_first() {
        let dir = tempfile::tempdir().expect("dir");
        for (name, size) in
            [("2026-01-01_00-00-00.mp4", 400), ("2026-01-01_00-10-00.mp4", 400), ("2026-01-01_00-20-00.mp4.part", 300)]
        {
            std::fs::write(dir.path().join(name), vec![0u8; size]).expect("write");
        }
        std::fs::write(dir.path().join("notes.txt"), vec![0u8; 5000]).expect("write");
        enforce_quota(dir.path(), 800);
        assert!(!dir.path().join("2026-01-01_00-00-00.mp4").exists(), "the oldest went");
        assert!(dir.path().join("2026-01-01_00-10-00.mp4").exists());
        assert!(dir.path().join("2026-01-01_00-20-00.mp4.part").exists(), "the segment being written stays");
        assert!(dir.path().join("notes.txt").exists(), "other files are not ours");
    }
}

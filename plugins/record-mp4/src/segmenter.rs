//! The recording state machine: fed tracks and batches of samples, it decides where segments start and end and when
//! a part is flushed, and writes through [`Files`] (the host's storage in the plugin, memory in tests, a directory in
//! the router's native benchmark).
//!
//! Invariants:
//! - A segment starts on a keyframe of the primary track (the first video track; the first audio track when there is
//!   no video), so every file plays from its first byte. Samples before that keyframe are dropped.
//! - Each segment's decode times start near 0: the primary track's at exactly 0, the others at the same instant
//!   converted to their clock; their samples from before that instant are dropped.
//! - Every part is appended to the file as soon as it is complete: a crash loses at most the part being collected
//!   (and the torn tail `recover` cuts). A file is synced only before it is committed.
//! - A sample's duration is the distance to the next sample of its track, so each track holds its latest sample back
//!   until the next one arrives (or the segment ends, when the previous duration or a codec default is used).

use std::sync::Arc;
use std::time::Duration;

use crate::config::Config;
use crate::media::{Codec, Payload, Sample, SampleData, TrackInfo};
use crate::mux::{self, Fragment, FragmentSample, Part};

/// Where segments are written. Implementations map these onto the host's `storage` interface, memory, or files.
pub trait Files {
    type File;
    /// What a batch's bytes are held as.
    type Payload: Payload;
    /// Starts a new file. [`CreateError::Exists`] makes the segmenter try the next name ("-2", "-3", …).
    fn create(&mut self, path: &str) -> Result<Self::File, CreateError>;
    fn append(&mut self, file: &mut Self::File, data: &[u8]) -> Result<(), String>;
    /// Appends a part: its head, then its sample ranges, as one write.
    fn append_part(&mut self, file: &mut Self::File, part: Part<Self::Payload>) -> Result<(), String>;
    /// Makes everything appended durable.
    fn sync(&mut self, file: &mut Self::File) -> Result<(), String>;
    /// Gives the file its final name; no writes follow.
    fn commit(&mut self, file: Self::File) -> Result<(), String>;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CreateError {
    /// A file with that name exists: another name is tried.
    Exists(String),
    /// Anything else (quota, permissions): the segment cannot start.
    Failed(String),
}

/// How many names ("", "-2" … "-10") are tried before a segment gives up on being created.
const NAME_ATTEMPTS: u32 = 10;

/// A sample this much later than the previous one of its track (in seconds) is after a gap in the source: the
/// previous sample keeps its usual duration and a new part starts, whose tfdt places the new sample at its time.
const GAP_SECONDS: i64 = 1;

/// A part is flushed whatever the primary track does once another track has collected this many part durations
/// (the primary track stalled, e.g. a camera whose video stopped while audio flows) …
const STALLED_PARTS: u32 = 4;
/// … or once it holds this much sample data, which bounds the plugin's memory.
const MAX_PART_BYTES: usize = 16 << 20;

/// One recording of one route.
#[derive(Debug)]
pub struct Segmenter<F: Files> {
    files: F,
    route: String,
    config: Config,
    tracks: Vec<TrackState<F::Payload>>,
    /// Index into `tracks` of the track that decides where segments and parts start.
    primary: Option<usize>,
    /// `config.part_duration` and `config.segment_duration` in the primary track's clock: compared with every
    /// primary sample's dts, so converted once.
    part_ticks: i64,
    segment_ticks: i64,
    segment: Option<Segment<F::File>>,
    fragment: Fragment<F::Payload>,
    /// Host track ids that are not recorded, already reported once.
    ignored: Vec<u32>,
    last_wallclock_ms: u64,
    committed: Vec<String>,
}

#[derive(Debug)]
struct TrackState<P> {
    info: TrackInfo,
    /// This track's clock at the segment's start.
    base: i64,
    last_dts: Option<i64>,
    last_duration: Option<u32>,
    pending: Option<Pending<P>>,
    /// [`STALLED_PARTS`] part durations in this track's clock.
    stalled_ticks: u64,
}

/// A track's latest sample, waiting for the next one to know its duration.
#[derive(Debug)]
struct Pending<P> {
    dts: i64,
    pts: i64,
    keyframe: bool,
    wallclock_ms: Option<u64>,
    data: SampleData<P>,
}

#[derive(Debug)]
struct Segment<File> {
    file: File,
    path: String,
    /// The primary track's dts of the segment's first sample.
    start_dts: i64,
    /// The primary track's dts of the current part's first sample.
    part_start_dts: Option<i64>,
    sequence: u32,
}

impl<F: Files> Segmenter<F> {
    /// Starts a recording. Tracks that cannot be recorded (VP8, no usable decoder configuration) are skipped with a
    /// warning; none left is an error.
    pub fn new(files: F, route: &str, tracks: Vec<TrackInfo>, config: Config) -> Result<Segmenter<F>, String> {
        let mut s = Segmenter {
            files,
            route: route.to_string(),
            config,
            tracks: Vec::new(),
            primary: None,
            part_ticks: 0,
            segment_ticks: 0,
            segment: None,
            fragment: Fragment::new(&[]),
            ignored: Vec::new(),
            last_wallclock_ms: 0,
            committed: Vec::new(),
        };
        s.set_tracks(tracks);
        if s.tracks.is_empty() {
            return Err(format!(
                "route \"{route}\" has no track this recorder can write to MP4 (it records H.264, H.265, AAC, Opus and G.711; VP8 is not supported)"
            ));
        }
        Ok(s)
    }

    /// The file being written, if a segment is open.
    pub fn current_path(&self) -> Option<&str> {
        self.segment.as_ref().map(|s| s.path.as_str())
    }

    /// Every file committed so far, in order.
    pub fn committed(&self) -> &[String] {
        &self.committed
    }

    pub fn files(&self) -> &F {
        &self.files
    }

    pub fn files_mut(&mut self) -> &mut F {
        &mut self.files
    }

    /// The tracks being recorded, in MP4 track order.
    pub fn tracks(&self) -> impl Iterator<Item = &TrackInfo> {
        self.tracks.iter().map(|t| &t.info)
    }

    /// One batch: `samples` index into `payload`, which is kept (not copied) until the last part using it is written.
    /// Any iterator of samples: the plugin maps the host's sample records on the fly rather than collecting them.
    pub fn write(&mut self, payload: Arc<F::Payload>, samples: impl IntoIterator<Item = Sample>) -> Result<(), String> {
        for s in samples {
            let Some(index) = self.tracks.iter().position(|t| t.info.id == s.track) else {
                if !self.ignored.contains(&s.track) {
                    self.ignored.push(s.track);
                    sluice_sdk::log::debug(&format!(
                        "record-mp4 \"{}\": samples of track {} are not recorded",
                        self.route, s.track
                    ));
                }
                continue;
            };
            let inside = s.offset.checked_add(s.len).is_some_and(|end| end as usize <= payload.len());
            if !inside {
                return Err(format!(
                    "a sample of track {} at bytes {}..+{} lies outside the batch payload of {} bytes",
                    s.track,
                    s.offset,
                    s.len,
                    payload.len()
                ));
            }
            let data = SampleData { payload: Arc::clone(&payload), offset: s.offset, len: s.len };
            self.handle_sample(index, &s, data)?;
        }
        Ok(())
    }

    /// The source's tracks changed. When what is recorded changes (tracks, codecs, clocks, decoder
    /// configurations), the current segment is committed and the next starts, with a new init segment, at the next
    /// keyframe. A set with nothing recordable leaves the recorder idle until one arrives.
    pub fn update_tracks(&mut self, tracks: Vec<TrackInfo>) -> Result<(), String> {
        let key = |t: &TrackInfo| (t.id, t.codec, t.clock_rate, t.config.clone(), t.channels, t.sample_rate);
        let now: Vec<_> = self.tracks.iter().map(|t| key(&t.info)).collect();
        let next: Vec<_> = tracks.iter().filter(|t| mux::check_recordable(t).is_ok()).map(key).collect();
        if now == next {
            for t in &mut self.tracks {
                if let Some(n) = tracks.iter().find(|n| n.id == t.info.id) {
                    t.info = n.clone();
                }
            }
            return Ok(());
        }
        self.close_segment()?;
        self.ignored.clear();
        self.set_tracks(tracks);
        if self.tracks.is_empty() {
            sluice_sdk::log::warn(&format!(
                "record-mp4 \"{}\": the route has no recordable track now; recording resumes when it has one",
                self.route
            ));
        }
        Ok(())
    }

    /// Flushes the last part and commits the segment.
    pub fn finish(&mut self) -> Result<(), String> {
        self.close_segment()
    }

    fn set_tracks(&mut self, tracks: Vec<TrackInfo>) {
        let last = std::mem::take(&mut self.tracks);
        for info in tracks {
            if let Err(why) = mux::check_recordable(&info) {
                sluice_sdk::log::warn(&format!("record-mp4 \"{}\": not recording {why}", self.route));
                self.ignored.push(info.id);
                continue;
            }
            // A track that continues keeps its last duration: a better guess than a codec default.
            let last_duration = last.iter().find(|t| t.info.id == info.id).and_then(|t| t.last_duration);
            let stalled = self.config.part_duration.saturating_mul(STALLED_PARTS);
            let stalled_ticks = u64::try_from(ticks(stalled, info.clock_rate)).unwrap_or(u64::MAX);
            self.tracks.push(TrackState { info, base: 0, last_dts: None, last_duration, pending: None, stalled_ticks });
        }
        self.primary =
            self.tracks.iter().position(|t| t.info.codec.is_video()).or((!self.tracks.is_empty()).then_some(0));
        let clock = self.primary.map_or(1, |p| self.tracks[p].info.clock_rate);
        self.part_ticks = ticks(self.config.part_duration, clock);
        self.segment_ticks = ticks(self.config.segment_duration, clock);
        let infos: Vec<TrackInfo> = self.tracks.iter().map(|t| t.info.clone()).collect();
        self.fragment = Fragment::new(&infos);
    }

    fn handle_sample(&mut self, index: usize, s: &Sample, data: SampleData<F::Payload>) -> Result<(), String> {
        if let Some(w) = s.wallclock_ms {
            self.last_wallclock_ms = w;
        }
        let Some(primary) = self.primary else { return Ok(()) };
        let is_primary = index == primary;
        let primary_video = self.tracks[primary].info.codec.is_video();
        // Where a segment may start: a keyframe of the primary video track, or any sample of an audio-only one.
        let starts = is_primary && (s.keyframe || !primary_video);
        match &self.segment {
            None if !starts => return Ok(()),
            None => self.open_segment(s)?,
            Some(seg) if starts && s.dts.saturating_sub(seg.start_dts) >= self.segment_ticks => {
                self.close_segment()?;
                self.open_segment(s)?;
            }
            Some(_) => {}
        }

        let track = &mut self.tracks[index];
        if s.dts < track.base || track.last_dts.is_some_and(|last| s.dts < last) {
            // Before the segment's start (audio captured just before the keyframe), or out of decode order.
            return Ok(());
        }
        track.last_dts = Some(s.dts);

        let mut flush = false;
        if let Some(p) = track.pending.take() {
            let clock = i64::from(track.info.clock_rate);
            // Saturating, as every timestamp sum here: the host passes the source's timestamps on, whatever they are.
            let gap = s.dts.saturating_sub(p.dts);
            let duration = if gap > GAP_SECONDS * clock {
                flush = true;
                default_duration(track, p.data.len)
            } else {
                u32::try_from(gap).unwrap_or(u32::MAX)
            };
            track.last_duration = Some(duration);
            self.fragment.push(index, fragment_sample(track, p, duration));
        }
        track.pending =
            Some(Pending { dts: s.dts, pts: s.pts, keyframe: s.keyframe, wallclock_ms: s.wallclock_ms, data });

        if is_primary {
            match self.segment.as_ref().and_then(|seg| seg.part_start_dts) {
                Some(start) => flush |= s.dts.saturating_sub(start) >= self.part_ticks,
                None => {
                    if let Some(seg) = &mut self.segment {
                        seg.part_start_dts = Some(s.dts);
                    }
                }
            }
        } else {
            flush |= self.fragment.duration(index) >= self.tracks[index].stalled_ticks;
        }
        flush |= self.fragment.data_len() >= MAX_PART_BYTES;
        if flush {
            self.flush_part()?;
            if let Some(seg) = &mut self.segment {
                // The sample just held back opens the next part.
                seg.part_start_dts = self.tracks[primary].pending.as_ref().map(|p| p.dts);
            }
        }
        Ok(())
    }

    fn open_segment(&mut self, first: &Sample) -> Result<(), String> {
        let Some(primary) = self.primary else { return Ok(()) };
        let primary_clock = i128::from(self.tracks[primary].info.clock_rate.max(1));
        for t in &mut self.tracks {
            // The same instant in every track's clock, rounded to the nearest tick.
            let clock = i128::from(t.info.clock_rate);
            let scaled = i128::from(first.dts) * clock;
            let base = (scaled + scaled.signum() * primary_clock / 2) / primary_clock;
            t.base = i64::try_from(base).unwrap_or(i64::MAX);
            t.last_dts = None;
            t.pending = None;
        }
        let infos: Vec<TrackInfo> = self.tracks.iter().map(|t| t.info.clone()).collect();
        let init = mux::init_segment(&infos)?;
        let wallclock = first.wallclock_ms.unwrap_or(self.last_wallclock_ms);

        let mut last_error = String::new();
        for attempt in 1..=NAME_ATTEMPTS {
            let suffix = if attempt == 1 { String::new() } else { format!("-{attempt}") };
            let path = self.config.path.expand_with_suffix(&self.route, wallclock, &suffix)?;
            match self.files.create(&path) {
                Ok(mut file) => {
                    self.files.append(&mut file, &init).map_err(|e| format!("{path}: {e}"))?;
                    self.segment =
                        Some(Segment { file, path, start_dts: first.dts, part_start_dts: None, sequence: 1 });
                    return Ok(());
                }
                Err(CreateError::Exists(e)) => last_error = format!("{path}: {e}"),
                Err(CreateError::Failed(e)) => return Err(format!("cannot create {path}: {e}")),
            }
        }
        Err(format!("cannot create a segment file after {NAME_ATTEMPTS} names were taken; last: {last_error}"))
    }

    /// Appends the collected part to the segment's file.
    fn flush_part(&mut self) -> Result<(), String> {
        let Some(seg) = &mut self.segment else { return Ok(()) };
        let Some(part) = self.fragment.finish(seg.sequence)? else { return Ok(()) };
        seg.sequence = seg.sequence.wrapping_add(1);
        if let Err(e) = self.files.append_part(&mut seg.file, part) {
            // The file's tail may be torn: leave it uncommitted for `recover` at the next start, and start a new
            // segment at the next keyframe.
            let path = seg.path.clone();
            self.segment = None;
            return Err(format!("{path}: {e}"));
        }
        Ok(())
    }

    /// Writes every held-back sample with its last known duration, flushes the part, syncs and commits.
    fn close_segment(&mut self) -> Result<(), String> {
        if self.segment.is_none() {
            return Ok(());
        }
        for index in 0..self.tracks.len() {
            let track = &mut self.tracks[index];
            if let Some(p) = track.pending.take() {
                let duration = track.last_duration.unwrap_or_else(|| default_duration(track, p.data.len));
                self.fragment.push(index, fragment_sample(track, p, duration));
            }
        }
        self.flush_part()?;
        let Some(mut seg) = self.segment.take() else { return Ok(()) };
        self.files.sync(&mut seg.file).map_err(|e| format!("{}: {e}", seg.path))?;
        self.files.commit(seg.file).map_err(|e| format!("{}: {e}", seg.path))?;
        self.committed.push(seg.path);
        Ok(())
    }
}

/// `d` in ticks of `clock`, rounded up: `elapsed >= ticks(d)` exactly when `elapsed` ticks last at least `d`.
fn ticks(d: Duration, clock: u32) -> i64 {
    let nanos = d.as_nanos().saturating_mul(u128::from(clock.max(1)));
    i64::try_from(nanos.div_ceil(1_000_000_000)).unwrap_or(i64::MAX)
}

fn fragment_sample<P>(track: &TrackState<P>, p: Pending<P>, duration: u32) -> FragmentSample<P> {
    let cts = p.pts.saturating_sub(p.dts);
    FragmentSample {
        decode_time: u64::try_from(p.dts.saturating_sub(track.base)).unwrap_or(0),
        duration,
        composition_offset: i32::try_from(cts).unwrap_or(if cts < 0 { i32::MIN } else { i32::MAX }),
        sync: p.keyframe || !track.info.codec.is_video(),
        wallclock_ms: p.wallclock_ms,
        data: p.data,
    }
}

/// The duration of a track's last sample when no later one tells: one typical frame of the codec.
fn default_duration<P>(track: &TrackState<P>, len: u32) -> u32 {
    let clock = track.info.clock_rate;
    match track.info.codec {
        Codec::Aac => 1024,
        // 20 ms, what WebRTC and most encoders send.
        Codec::Opus => clock / 50,
        // One byte per sample and channel.
        Codec::Pcmu | Codec::Pcma => len / track.info.channels.max(1),
        // 30 frames per second.
        Codec::H264 | Codec::H265 | Codec::Vp8 => clock / 30,
    }
    .max(1)
}

/// An in-memory [`Files`]: for tests, and for measuring the muxer without a disk.
#[derive(Debug, Default)]
pub struct MemFiles {
    /// Every file created, by path, committed or not.
    pub files: std::collections::BTreeMap<String, Vec<u8>>,
    pub committed: Vec<String>,
    pub syncs: usize,
    pub appends: usize,
}

impl Files for MemFiles {
    type File = String;
    type Payload = Vec<u8>;

    fn create(&mut self, path: &str) -> Result<String, CreateError> {
        if self.files.contains_key(path) {
            return Err(CreateError::Exists("exists".into()));
        }
        self.files.insert(path.to_string(), Vec::new());
        Ok(path.to_string())
    }

    fn append(&mut self, file: &mut String, data: &[u8]) -> Result<(), String> {
        self.appends += 1;
        self.files.get_mut(file.as_str()).ok_or("no such file")?.extend_from_slice(data);
        Ok(())
    }

    fn append_part(&mut self, file: &mut String, part: Part<Vec<u8>>) -> Result<(), String> {
        self.appends += 1;
        let out = self.files.get_mut(file.as_str()).ok_or("no such file")?;
        out.extend_from_slice(&part.head);
        for d in &part.data {
            out.extend_from_slice(d.bytes());
        }
        Ok(())
    }

    fn sync(&mut self, _file: &mut String) -> Result<(), String> {
        self.syncs += 1;
        Ok(())
    }

    fn commit(&mut self, file: String) -> Result<(), String> {
        self.committed.push(file);
        Ok(())
    }
}

/// [`Files`] in a directory of the local file system: the native baseline the router's benchmark compares the
/// plugin with. Files are written as `NAME.part` and renamed on commit, as the host's storage does.
#[cfg(not(target_arch = "wasm32"))]
#[derive(Debug, Clone)]
pub struct DirFiles {
    root: std::path::PathBuf,
}

#[cfg(not(target_arch = "wasm32"))]
impl DirFiles {
    pub fn new(root: impl Into<std::path::PathBuf>) -> DirFiles {
        DirFiles { root: root.into() }
    }
}

#[cfg(not(target_arch = "wasm32"))]
#[derive(Debug)]
pub struct DirFile {
    file: std::fs::File,
    part: std::path::PathBuf,
    path: std::path::PathBuf,
}

#[cfg(not(target_arch = "wasm32"))]
impl Files for DirFiles {
    type File = DirFile;
    type Payload = Vec<u8>;

    fn create(&mut self, path: &str) -> Result<DirFile, CreateError> {
        let full = self.root.join(path);
        if full.exists() {
            return Err(CreateError::Exists(format!("{} exists", full.display())));
        }
        if let Some(dir) = full.parent() {
            std::fs::create_dir_all(dir).map_err(|e| CreateError::Failed(format!("{}: {e}", dir.display())))?;
        }
        let mut part = full.clone().into_os_string();
        part.push(".part");
        let part = std::path::PathBuf::from(part);
        let file = std::fs::File::create(&part).map_err(|e| CreateError::Failed(format!("{}: {e}", part.display())))?;
        Ok(DirFile { file, part, path: full })
    }

    fn append(&mut self, file: &mut DirFile, data: &[u8]) -> Result<(), String> {
        use std::io::Write;
        file.file.write_all(data).map_err(|e| e.to_string())
    }

    /// One vectored write straight from the batch buffers, as the host's storage does.
    fn append_part(&mut self, file: &mut DirFile, part: Part<Vec<u8>>) -> Result<(), String> {
        use std::io::{IoSlice, Write};
        let mut slices = Vec::with_capacity(part.data.len() + 1);
        slices.push(IoSlice::new(&part.head));
        slices.extend(part.data.iter().map(|d| IoSlice::new(d.bytes())));
        let mut slices = &mut slices[..];
        while !slices.is_empty() {
            match file.file.write_vectored(slices) {
                Ok(0) => return Err("the disk took no bytes".to_string()),
                Ok(n) => IoSlice::advance_slices(&mut slices, n),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.to_string()),
            }
        }
        Ok(())
    }

    fn sync(&mut self, file: &mut DirFile) -> Result<(), String> {
        file.file.sync_data().map_err(|e| e.to_string())
    }

    fn commit(&mut self, file: DirFile) -> Result<(), String> {
        std::fs::rename(&file.part, &file.path).map_err(|e| e.to_string())
    }
}
